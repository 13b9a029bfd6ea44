-- `pht pre-run` on the reference's trains: accepted at every stop for the
-- right station, with the plaintext it writes checked with tar against
-- expected.json; every tampered train refused at the named step with the
-- input left byte for byte as it was.
local helpers = require "helpers"
local pht = require "pht"
local S = require "wf_support"

local q = helpers.q

-- The plaintext layer pre-run added: its files (with tar) and its history.
local function pre_run_layer(path)
  local layers = S.layers(path)
  local top = layers[#layers]
  return S.untar(top.path), top.history, #layers
end

describe("pht pre-run on the reference trains", function()
  local expected = S.expected()

  for n = 0, 2 do
    local station = "station_" .. (n + 1)
    it("accepts stage " .. n .. " for " .. station .. " and writes the plaintext the entrypoint shows", function()
      local path, ref = S.copy_stage(n)
      local before = S.layers(path)
      local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(n + 1))
      assert.equal(0, code, err)
      local dir, history, nlayers = pre_run_layer(path)
      -- the layers above the base hold /opt only (the train's, each station's
      -- sealed results): left out, the new layer restating /opt whole
      local base = S.below_train(before)
      assert.is_true(base >= 1 and base < #before)
      assert.equal(base + 1, nlayers)
      assert.equal("libpht pre-run", history.created_by)
      assert.equal(expected.entrypoint, helpers.read(dir .. "/opt/pht_train/entrypoint.sh"))
      local od = S.untar(helpers.vectors .. "/" .. S.stages[n]:gsub("%.tar$", ".opt.tar"))
      -- what it restates is the input's, byte for byte
      assert.equal(helpers.read(od .. "/opt/train_config.json"), helpers.read(dir .. "/opt/train_config.json"))
      local key = helpers.sh("test -f " .. q(od .. "/opt/user_sym_key.key"))
      if key then
        assert.equal(helpers.read(od .. "/opt/user_sym_key.key"), helpers.read(dir .. "/opt/user_sym_key.key"))
      else
        assert.is_true(helpers.sh("test -f " .. q(dir .. "/opt/.wh.user_sym_key.key")))
      end
      -- e_h over what pre-run decrypted, recomputed with the primitives.
      local cfg = assert(pht.parse_config(helpers.read(od .. "/opt/train_config.json")))
      local h = pht.immutable_hasher(cfg:creator_id(), cfg:session_id())
      for _, name in ipairs(cfg:file_list()) do h:update_file(dir .. "/opt/pht_train/" .. name:gsub("^%./", "")) end
      h:begin_query()
      h:update_file(dir .. "/opt/pht_train/query.json")
      assert.equal(expected.hash, pht.hex(h:digest()))
      -- The results of the n visits so far, decrypted.
      if n == 0 then
        assert.is_false(helpers.sh("test -e " .. q(dir .. "/opt/pht_results/count.txt")))
      else
        for p, content in pairs(S.results_after(n)) do
          assert.equal(content, helpers.read(dir .. "/opt/pht_results/" .. p), p)
        end
      end
    end)
  end

  it("accepts the stage through the reference's environment variables", function()
    local _, ref = S.copy_stage(1)
    local code, _, err = S.pht("pre-run -q " .. q(ref), {
      STATION_ID = "station_2", PRIVATE_KEY_PATH = S.key("station_2") })
    assert.equal(0, code, err)
  end)

  it("writes to --output and leaves the input unchanged", function()
    local path, ref = S.copy_stage(0)
    local before = helpers.sha256_file(path)
    local out = helpers.tmpdir() .. "/out.tar"
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --output " .. q("docker-archive:" .. out)
      .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    assert.equal(before, helpers.sha256_file(path))
    local _, history = pre_run_layer(out)
    assert.equal("libpht pre-run", history.created_by)
  end)

  it("reports each step as progress on stderr", function()
    local _, ref = S.copy_stage(0)
    local code, out, err = S.pht("pre-run " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    assert.equal("", out)
    for _, step in ipairs({ "find_station", "unwrap_key", "check_immutable_files", "verify_immutable_hash",
      "verify_creator_signature", "verify_build_signature", "write_image" }) do
      assert.matches(step, err, 1, true)
    end
  end)

  it("leaves no temporary files behind", function()
    local _, ref = S.copy_stage(1)
    local tmp = helpers.tmpdir()
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --tmpdir " .. q(tmp) .. " " .. S.station_args(2))
    assert.equal(0, code, err)
    assert.equal("", helpers.run("ls -A " .. q(tmp)))
  end)
end)

-- Each attack: make the image, run pre-run, expect the step and the reason,
-- and the image unchanged.
local function refused(path, ref, args, step, reason)
  local before = helpers.sha256_file(path)
  local tmp = helpers.tmpdir()
  local code, _, err = S.pht("pre-run -q " .. q(ref) .. " --tmpdir " .. q(tmp) .. " " .. args)
  assert.equal(1, code, err)
  assert.matches("pre-run failed at step " .. step .. ": ", err, 1, true)
  assert.matches(reason, err)
  assert.equal(before, helpers.sha256_file(path))
  assert.equal("", helpers.run("ls -A " .. q(tmp)))
end

-- Replace /opt/pht_train/NAME (or a results file) with `plain` encrypted under the stage's key.
local function replace_encrypted(ref, image_path, symkey, plain)
  S.tamper(ref, function(w) assert(w:add_bytes(image_path, symkey:encrypt(plain))) end)
end

describe("pht pre-run refuses the reference's tamper cases", function()
  it("a changed immutable file, at verify_immutable_hash", function()
    local path, ref = S.copy_stage(0)
    local symkey = S.symkey(ref, 0, "station_1")
    replace_encrypted(ref, "/opt/pht_train/entrypoint.sh", symkey, "#!/bin/sh\ncat /etc/shadow\n")
    refused(path, ref, S.station_args(1), "verify_immutable_hash", "immutable files have changed")
  end)

  it("a changed session id, at verify_immutable_hash", function()
    local path, ref = S.copy_stage(0)
    S.tamper_config(ref, function(c) c.session_id = pht.hex(pht.random(64)) end)
    refused(path, ref, S.station_args(1), "verify_immutable_hash", "immutable files have changed")
  end)

  it("a changed file list, at verify_immutable_hash", function()
    local path, ref = S.copy_stage(0)
    S.tamper_config(ref, function(c) c.file_list = { "analysis.r", "entrypoint.sh" } end)
    refused(path, ref, S.station_args(1), "verify_immutable_hash", "immutable files have changed")
  end)

  it("an invalid creator signature, at verify_creator_signature", function()
    local path, ref = S.copy_stage(0)
    local user = assert(pht.load_private_key_file(S.key("user")))
    S.tamper_config(ref, function(c) c.signature = pht.hex(user:sign("something else")) end)
    refused(path, ref, S.station_args(1), "verify_creator_signature", "does not verify")
  end)

  it("a valid creator signature over a wrong hash, at verify_immutable_hash", function()
    local path, ref = S.copy_stage(0)
    local user = assert(pht.load_private_key_file(S.key("user")))
    local wrong = pht.sha512("another train")
    S.tamper_config(ref, function(c)
      c.hash = pht.hex(wrong)
      c.signature = pht.hex(user:sign(wrong))
    end)
    refused(path, ref, S.station_args(1), "verify_immutable_hash", "immutable files have changed")
  end)

  it("a build signature by another key, at verify_build_signature", function()
    local path, ref = S.copy_stage(0)
    local other = assert(pht.load_private_key_file(S.key("station_3")))
    S.tamper_config(ref, function(c) c.build.signature = pht.hex(other:sign("x")) end)
    refused(path, ref, S.station_args(1), "verify_build_signature", "does not verify")
  end)
end)

describe("pht pre-run refuses what libpht checks beyond the reference", function()
  it("an extra file in /opt/pht_train, at check_immutable_files", function()
    local path, ref = S.copy_stage(0)
    local symkey = S.symkey(ref, 0, "station_1")
    replace_encrypted(ref, "/opt/pht_train/extra.sh", symkey, "rm -rf /\n")
    refused(path, ref, S.station_args(1), "check_immutable_files", "extra.sh is not in file_list")
  end)

  it("a missing listed file, at check_immutable_files", function()
    local path, ref = S.copy_stage(0)
    S.tamper(ref, function(w) assert(w:whiteout("/opt/pht_train/analysis.r")) end)
    refused(path, ref, S.station_args(1), "check_immutable_files", "analysis.r is in file_list but missing")
  end)

  it("a station that is not on the route, at find_station", function()
    local path, ref = S.copy_stage(0)
    refused(path, ref, "--station station_9 --key " .. q(S.key("station_1")), "find_station",
      "station_9 is not on the route")
  end)

  it("a station whose turn it is not, at check_turn", function()
    local path, ref = S.copy_stage(1)
    refused(path, ref, S.station_args(3), "check_turn", "it is station station_2's turn")
  end)

  it("a station that already signed, at check_turn", function()
    local path, ref = S.copy_stage(2)
    refused(path, ref, S.station_args(1), "check_turn", "it is station station_3's turn")
  end)

  it("the wrong private key for the station, at check_station_key", function()
    local path, ref = S.copy_stage(0)
    refused(path, ref, S.station_args(1, "station_2"), "check_station_key", "is not station station_1's key")
  end)

  it("a missing signature of an earlier stop, at verify_previous_signatures", function()
    local path, ref = S.copy_stage(2)
    S.tamper_config(ref, function(c)
      for _, s in ipairs(c.route) do if s.index == 0 then s.signature = S.null end end
    end)
    refused(path, ref, S.station_args(3), "verify_previous_signatures", "station_1 %(index 0%) has no signature")
  end)

  it("a changed result, at verify_result_hash", function()
    local path, ref = S.copy_stage(1)
    local symkey = S.symkey(ref, 1, "station_2")
    replace_encrypted(ref, "/opt/pht_results/count.txt", symkey, "41\n")
    refused(path, ref, S.station_args(2), "verify_result_hash", "results have changed")
  end)

  it("a reordered route, at verify_result_signature", function()
    local path, ref = S.copy_stage(2)
    S.tamper_config(ref, function(c)
      for _, s in ipairs(c.route) do
        if s.index == 0 then s.index = 1 elseif s.index == 1 then s.index = 0 end
      end
    end)
    refused(path, ref, S.station_args(3), "verify_result_signature",
      "does not verify with the key of station station_1 %(index 1%)")
  end)

  it("a validly signed but wrong chain digest, at verify_chain_digests", function()
    local path, ref = S.copy_stage(2)
    local s2 = assert(pht.load_private_key_file(S.key("station_2")))
    local digest = pht.sha512("not the chain")
    S.tamper_config(ref, function(c)
      for _, s in ipairs(c.route) do
        if s.index == 1 then s.signature = { digest = pht.hex(digest), signature = pht.hex(s2:sign_digest(digest)) } end
      end
    end)
    refused(path, ref, S.station_args(3), "verify_chain_digests", "chain digest is not SHA%-512")
  end)

  it("results planted before the first stop, at check_results_files", function()
    local path, ref = S.copy_stage(0)
    S.tamper(ref, function(w) assert(w:add_bytes("/opt/pht_results/planted.txt", "data")) end)
    refused(path, ref, S.station_args(1), "check_results_files", "result_hash is null but")
  end)

  it("an image pre-run already decrypted, at check_not_decrypted", function()
    local path, ref = S.copy_stage(0)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))))
    refused(path, ref, S.station_args(1), "check_not_decrypted", "already decrypted by pre%-run")
  end)
end)
