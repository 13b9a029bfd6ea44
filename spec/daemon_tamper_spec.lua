-- The tamper cases of pre-run and post-run, on trains kept in the Docker
-- daemon: each attack is made on a reference train loaded with `docker load`
-- and changed in place through the docker-daemon transport; pht must refuse
-- it at the named step and leave the tag on the very image it named (same
-- id, by `docker image inspect`), adding no dangling image.
local helpers = require "helpers"
local pht = require "pht"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"

local q = helpers.q

-- A reference stage in the daemon under a name of its own; returns the tag
-- and its docker-daemon reference. Removed when the spec ends.
local function stage(n)
  local tag = D.load_stage(S.stages[n], support.unique_name("daemon-tamper"))
  finally(function() D.rmi(tag) end)
  return tag, "docker-daemon:" .. tag
end

local function replace_encrypted(ref, image_path, symkey, plain)
  D.tamper(ref, function(w) assert(w:add_bytes(image_path, symkey:encrypt(plain))) end)
end

local function tamper_config(ref, fn)
  D.tamper(ref, function(w, img)
    local cfg = S.decode(assert(img:read_file("/opt/train_config.json")))
    fn(cfg)
    assert(w:add_bytes("/opt/train_config.json", S.encode(cfg)))
  end)
end

-- Run `pht VERB` on the daemon's tag: exit 1 at step, naming the reason; the
-- tag keeps its image and no dangling image appears.
local function refused(verb, tag, args, step, reason)
  local before = assert(D.id(tag))
  local dangling = D.dangling()
  local code, _, err = S.pht(verb .. " -q " .. q("docker-daemon:" .. tag) .. " " .. args, D.env())
  assert.equal(1, code, err)
  assert.matches(verb .. " failed at step " .. step .. ": ", err, 1, true)
  assert.matches(reason, err)
  assert.equal(before, D.id(tag))
  assert.same({}, D.new_dangling(dangling))
end

-- Each case: the stage it starts from, the attack, pre-run's args, step, reason.
local cases = {
  { "a changed immutable file", 0, function(ref)
      replace_encrypted(ref, "/opt/pht_train/entrypoint.sh", S.symkey(ref, 0, "station_1"), "#!/bin/sh\ncat /etc/shadow\n")
    end, 1, "verify_immutable_hash", "immutable files have changed" },
  { "a changed session id", 0, function(ref)
      tamper_config(ref, function(c) c.session_id = pht.hex(pht.random(64)) end)
    end, 1, "verify_immutable_hash", "immutable files have changed" },
  { "a changed file list", 0, function(ref)
      tamper_config(ref, function(c) c.file_list = { "analysis.r", "entrypoint.sh" } end)
    end, 1, "verify_immutable_hash", "immutable files have changed" },
  { "an invalid creator signature", 0, function(ref)
      local user = assert(pht.load_private_key_file(S.key("user")))
      tamper_config(ref, function(c) c.signature = pht.hex(user:sign("something else")) end)
    end, 1, "verify_creator_signature", "does not verify" },
  { "a valid creator signature over a wrong hash", 0, function(ref)
      local user = assert(pht.load_private_key_file(S.key("user")))
      local wrong = pht.sha512("another train")
      tamper_config(ref, function(c)
        c.hash = pht.hex(wrong)
        c.signature = pht.hex(user:sign(wrong))
      end)
    end, 1, "verify_immutable_hash", "immutable files have changed" },
  { "a build signature by another key", 0, function(ref)
      local other = assert(pht.load_private_key_file(S.key("station_3")))
      tamper_config(ref, function(c) c.build.signature = pht.hex(other:sign("x")) end)
    end, 1, "verify_build_signature", "does not verify" },
  { "an extra file in /opt/pht_train", 0, function(ref)
      replace_encrypted(ref, "/opt/pht_train/extra.sh", S.symkey(ref, 0, "station_1"), "rm -rf /\n")
    end, 1, "check_immutable_files", "extra.sh is not in file_list" },
  { "a missing listed file", 0, function(ref)
      D.tamper(ref, function(w) assert(w:whiteout("/opt/pht_train/analysis.r")) end)
    end, 1, "check_immutable_files", "analysis.r is in file_list but missing" },
  { "a station that is not on the route", 0, nil,
    "--station station_9 --key " .. q(S.key("station_1")), "find_station", "station_9 is not on the route" },
  { "a station whose turn it is not", 1, nil, 3, "check_turn", "it is station station_2's turn" },
  { "a station that already signed", 2, nil, 1, "check_turn", "it is station station_3's turn" },
  { "the wrong private key for the station", 0, nil, S.station_args(1, "station_2"),
    "check_station_key", "is not station station_1's key" },
  { "a missing signature of an earlier stop", 2, function(ref)
      tamper_config(ref, function(c)
        for _, s in ipairs(c.route) do if s.index == 0 then s.signature = S.null end end
      end)
    end, 3, "verify_previous_signatures", "station_1 %(index 0%) has no signature" },
  { "a changed result", 1, function(ref)
      replace_encrypted(ref, "/opt/pht_results/count.txt", S.symkey(ref, 1, "station_2"), "41\n")
    end, 2, "verify_result_hash", "results have changed" },
  { "a reordered route", 2, function(ref)
      tamper_config(ref, function(c)
        for _, s in ipairs(c.route) do
          if s.index == 0 then s.index = 1 elseif s.index == 1 then s.index = 0 end
        end
      end)
    end, 3, "verify_result_signature", "does not verify with the key of station station_1 %(index 1%)" },
  { "a validly signed but wrong chain digest", 2, function(ref)
      local s2 = assert(pht.load_private_key_file(S.key("station_2")))
      local digest = pht.sha512("not the chain")
      tamper_config(ref, function(c)
        for _, s in ipairs(c.route) do
          if s.index == 1 then s.signature = { digest = pht.hex(digest), signature = pht.hex(s2:sign_digest(digest)) } end
        end
      end)
    end, 3, "verify_chain_digests", "chain digest is not SHA%-512" },
  { "results planted before the first stop", 0, function(ref)
      D.tamper(ref, function(w) assert(w:add_bytes("/opt/pht_results/planted.txt", "data")) end)
    end, 1, "check_results_files", "result_hash is null but" },
}

describe("pht pre-run on the daemon refuses", function()
  for _, c in ipairs(cases) do
    local what, n, attack, args, step, reason = c[1], c[2], c[3], c[4], c[5], c[6]
    it(what .. ", at " .. step .. ", leaving the tag's image id unchanged", function()
      local ok, why = D.ready(false)
      if not ok then return pending(why) end
      local tag, ref = stage(n)
      if attack then attack(ref) end
      if type(args) == "number" then args = S.station_args(args) end
      refused("pre-run", tag, args, step, reason)
    end)
  end

  it("an image pre-run already decrypted, at check_not_decrypted, leaving the tag's image id unchanged", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag, ref = stage(0)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1), D.env())))
    refused("pre-run", tag, S.station_args(1), "check_not_decrypted", "already decrypted by pre%-run")
  end)
end)

describe("pht post-run on the daemon refuses", function()
  -- Stage 0 after station_1's pre-run, with the run's changes made by edit.
  local function decrypted(edit)
    local tag, ref = stage(0)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1), D.env())))
    if edit then D.tamper(ref, edit, "run") end
    return tag
  end

  it("an algorithm that changed its own files, at verify_immutable_hash, leaving the tag's image id unchanged", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = decrypted(function(w) assert(w:add_bytes("/opt/pht_train/entrypoint.sh", "#!/bin/sh\necho changed\n")) end)
    refused("post-run", tag, S.station_args(1), "verify_immutable_hash", "immutable files have changed")
  end)

  it("a file the algorithm added to /opt/pht_train, at check_immutable_files, leaving the tag's image id unchanged", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = decrypted(function(w) assert(w:add_bytes("/opt/pht_train/added.sh", "x")) end)
    refused("post-run", tag, S.station_args(1), "check_immutable_files", "added.sh is not in file_list")
  end)

  it("an image no libpht pre-run wrote, at find_base, leaving the tag's image id unchanged", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = stage(0)
    refused("post-run", tag, S.station_args(1), "find_base", "no layer of this image was written by libpht pre%-run")
  end)

  it("the wrong key for the station, at check_station_key, leaving the tag's image id unchanged", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = decrypted()
    refused("post-run", tag, S.station_args(1, "station_2"), "check_station_key", "is not station station_1's key")
  end)
end)
