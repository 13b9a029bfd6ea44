-- Reproduces every value of the reference's expected.json with the `pht`
-- primitives alone and a plain tar read of the *.opt.tar fixtures
-- (doc/protocol.md §4-§6). Nothing here uses the workflow scripts.
local pht = require "pht"
local h = require "helpers"
local json = require "dkjson"

local expected = assert(json.decode(h.read(h.vectors .. "/expected.json")))
local stages = {
  [0] = "stage0-built",
  [1] = "stage1-station_1-post",
  [2] = "stage2-station_2-post",
  [3] = "stage3-station_3-post",
}

-- Extract a stage's /opt tree into a fresh directory; returns its opt path.
local function extract(stage)
  local dir = h.tmpdir()
  h.run("tar -xf " .. h.q(h.vectors .. "/" .. stages[stage] .. ".opt.tar") .. " -C " .. h.q(dir))
  return dir .. "/opt"
end

-- Regular files under opt/pht_results as relative paths, in the order tar lists them.
local function results_in_archive_order(stage)
  local files = {}
  local out = h.run("tar -tvf " .. h.q(h.vectors .. "/" .. stages[stage] .. ".opt.tar"))
  for line in out:gmatch("[^\n]+") do
    local kind, path = line:sub(1, 1), line:match("(opt/pht_results/%S+)$")
    if kind == "-" and path then files[#files + 1] = path:sub(#"opt/pht_results/" + 1) end
  end
  return files
end

local function private_key(name)
  return assert(pht.load_private_key_file(h.key_path(name)))
end

local function decrypt(symkey, path)
  return assert(symkey:decrypt(h.read(path)))
end

-- The symmetric key of a stage, unwrapped with the key of `holder`'s stop.
local function stage_symkey(cfg, holder)
  local stop = assert(cfg:stop(holder))
  return assert(private_key(holder):unwrap(assert(pht.unhex(stop.encrypted_key))))
end

local function immutable_hash(cfg, opt, symkey)
  local eh = pht.immutable_hasher(cfg:creator_id(), cfg:session_id())
  for _, name in ipairs(cfg:file_list()) do
    eh:update(decrypt(symkey, opt .. "/pht_train/" .. name:gsub("^%./", "")))
  end
  eh:begin_query()
  eh:update(decrypt(symkey, opt .. "/pht_train/query.json"))
  return eh:digest()
end

local function results_hash(cfg, opt, symkey, stage)
  local ed = pht.results_hasher(cfg:session_id())
  for _, rel in ipairs(results_in_archive_order(stage)) do
    ed:update(decrypt(symkey, opt .. "/pht_results/" .. rel))
  end
  return ed:digest()
end

describe("the reference vectors", function()
  for stage = 0, 3 do
    local holder = stage < 3 and ("station_" .. (stage + 1)) or nil
    describe(stages[stage], function()
      local opt, cfg
      before_each(function()
        opt = extract(stage)
        cfg = assert(pht.load_config(opt .. "/train_config.json"))
      end)

      it("has the immutable hash e_h of expected.json, signed by the creator and the builder", function()
        local symkey = holder and stage_symkey(cfg, holder)
          or assert(private_key("user"):unwrap(h.read(opt .. "/user_sym_key.key")))
        local eh = immutable_hash(cfg, opt, symkey)
        assert.are.equal(expected.hash, pht.hex(eh))
        assert.are.equal(expected.hash, cfg:get("hash"))

        local creator = assert(pht.load_public_key_hex(cfg:get("creator").rsa_public_key))
        local eh_sig = assert(pht.unhex(cfg:get("signature")))
        assert.is_true(creator:verify(eh, eh_sig))

        local build = cfg:get("build")
        local builder = assert(pht.load_public_key_hex(build.rsa_public_key))
        assert.is_true(builder:verify(eh .. eh_sig, assert(pht.unhex(build.signature))))
      end)

      if stage >= 1 then
        it("lists its results in Docker walk order, which pht.walk_sort reproduces", function()
          local listed = results_in_archive_order(stage)
          assert.are.same({ "a/b.txt", "a/numbers.txt", "a-c.txt", "count.txt" }, listed)
          local shuffled = { listed[4], listed[3], listed[2], listed[1] }
          assert.are.same(listed, pht.walk_sort(shuffled))
        end)

        it("has the result hash e_d of expected.json, signed by the station that wrote it", function()
          local symkey = holder and stage_symkey(cfg, holder)
            or assert(private_key("user"):unwrap(h.read(opt .. "/user_sym_key.key")))
          local ed = results_hash(cfg, opt, symkey, stage)
          assert.are.equal(expected.stations[stage].result_hash, pht.hex(ed))
          assert.are.equal(expected.stations[stage].result_hash, cfg:get("result_hash"))
          local writer = assert(pht.load_public_key_hex(cfg:route()[stage].rsa_public_key))
          assert.is_true(writer:verify_digest(ed, assert(pht.unhex(cfg:get("result_signature")))))
        end)

        it("has every earlier stop's chain digest of expected.json, each signed by its station", function()
          local route = cfg:route()
          local previous = cfg:session_id()
          local chain = ""
          for k = 1, stage do
            local stop = route[k]
            assert.are.equal(k - 1, stop.index)
            local e_d = assert(pht.unhex(expected.stations[k].result_hash))
            local digest = pht.chain_digest(previous, e_d)
            assert.are.equal(expected.stations[k].chain_digest, pht.hex(digest))
            assert.are.equal(expected.stations[k].chain_digest, stop.signature.digest)
            local key = assert(pht.load_public_key_hex(stop.rsa_public_key))
            assert.is_true(key:verify_digest(digest, assert(pht.unhex(stop.signature.signature))))
            chain = chain .. digest
            previous = chain
          end
          for k = stage + 1, #route do
            assert.is_nil(route[k].signature)
          end
        end)
      end

      if holder then
        it("can be decrypted only with the key of a stop on the route", function()
          local stop = assert(cfg:stop(holder))
          local wrapped = assert(pht.unhex(stop.encrypted_key))
          local symkey, err = private_key("builder"):unwrap(wrapped)
          assert.is_nil(symkey)
          assert.matches("OAEP", err)
          assert.is_truthy(private_key(holder):unwrap(wrapped))
        end)
      end
    end)
  end

  it("gives the creator exactly final_results_plaintext from stage 3", function()
    local opt = extract(3)
    local cfg = assert(pht.load_config(opt .. "/train_config.json"))
    local user = private_key("user")
    local symkey = assert(user:unwrap(h.read(opt .. "/user_sym_key.key")))
    -- creator.encrypted_key wraps the same key as /opt/user_sym_key.key.
    local again = assert(user:unwrap(assert(pht.unhex(cfg:get("creator").encrypted_key))))
    assert.are.equal(symkey:export(), again:export())
    local seen = {}
    for _, rel in ipairs(results_in_archive_order(3)) do
      seen["pht_results/" .. rel] = decrypt(symkey, opt .. "/pht_results/" .. rel)
    end
    assert.are.same(expected.final_results_plaintext, seen)
  end)

  it("runs the entrypoint of expected.json as the train's code", function()
    local opt = extract(0)
    local cfg = assert(pht.load_config(opt .. "/train_config.json"))
    local symkey = stage_symkey(cfg, "station_1")
    assert.are.equal(expected.entrypoint, decrypt(symkey, opt .. "/pht_train/entrypoint.sh"))
  end)
end)

describe("a tampered reference train", function()
  local opt, cfg, symkey
  before_each(function()
    opt = extract(2)
    cfg = assert(pht.load_config(opt .. "/train_config.json"))
    symkey = stage_symkey(cfg, "station_3")
  end)

  local function flip(s, pos)
    pos = pos or math.floor(#s / 2)
    return s:sub(1, pos - 1) .. string.char((s:byte(pos) + 1) % 256) .. s:sub(pos + 1)
  end

  it("fails to decrypt or to hash the same when one byte of an immutable file's ciphertext changes", function()
    local path = opt .. "/pht_train/analysis.r"
    local ct = h.read(path)
    -- The last byte of the next-to-last block: it changes the padding byte,
    -- so the PKCS#7 check reports a bad decrypt.
    local plain, err, code = symkey:decrypt(flip(ct, #ct - 16))
    assert.is_nil(plain)
    assert.are.equal("ECRYPTO", code)
    assert.matches("decrypt", err)
    -- A middle byte: decryption succeeds but e_h no longer matches.
    h.write(path, flip(ct, 20))
    assert.are_not.equal(cfg:get("hash"), pht.hex(immutable_hash(cfg, opt, symkey)))
  end)

  it("fails the result hash when one byte of a result's ciphertext changes", function()
    local path = opt .. "/pht_results/a/numbers.txt"
    h.write(path, flip(h.read(path), 40))
    assert.are_not.equal(cfg:get("result_hash"), pht.hex(results_hash(cfg, opt, symkey, 2)))
  end)

  it("fails the creator's signature when one byte of the config hash changes", function()
    local creator = assert(pht.load_public_key_hex(cfg:get("creator").rsa_public_key))
    local eh = flip(assert(pht.unhex(cfg:get("hash"))), 10)
    assert.is_false(creator:verify(eh, assert(pht.unhex(cfg:get("signature")))))
  end)

  it("fails every signature check when one byte of the signature changes", function()
    local eh = assert(pht.unhex(cfg:get("hash")))
    local creator = assert(pht.load_public_key_hex(cfg:get("creator").rsa_public_key))
    assert.is_false(creator:verify(eh, flip(assert(pht.unhex(cfg:get("signature"))))))
    local writer = assert(pht.load_public_key_hex(cfg:route()[2].rsa_public_key))
    local ed = assert(pht.unhex(cfg:get("result_hash")))
    assert.is_false(writer:verify_digest(ed, flip(assert(pht.unhex(cfg:get("result_signature"))))))
  end)

  it("fails when one byte of a public key changes", function()
    local hexkey = cfg:get("creator").rsa_public_key
    local pem = assert(pht.unhex(hexkey))
    -- One base64 character inside the modulus: the key either no longer
    -- parses or is another key, under which the signature does not verify.
    local at = pem:find("\n", 1, true) + 60
    local c = pem:sub(at, at)
    local changed = pem:sub(1, at - 1) .. (c == "A" and "B" or "A") .. pem:sub(at + 1)
    assert.are_not.equal(pem, changed)
    local key, err = pht.load_public_key(changed)
    if key then
      local eh = assert(pht.unhex(cfg:get("hash")))
      assert.is_false(key:verify(eh, assert(pht.unhex(cfg:get("signature")))))
    else
      assert.is_string(err)
    end
  end)

  it("fails to unwrap the symmetric key when one byte of encrypted_key changes", function()
    local stop = assert(cfg:stop("station_3"))
    local wrapped = flip(assert(pht.unhex(stop.encrypted_key)))
    local key, err, code = private_key("station_3"):unwrap(wrapped)
    assert.is_nil(key)
    assert.are.equal("ECRYPTO", code)
    assert.is_string(err)
  end)
end)
