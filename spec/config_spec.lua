-- train_config.json (`pht.config`): the reference trains of every stage, round
-- trips checked by Python's json module, unknown keys, integer ids, the setters
-- and the constructor, and one `it` per malformed document.
local pht = require "pht"
local h = require "helpers"

local stages = { "stage0-built", "stage1-station_1-post", "stage2-station_2-post", "stage3-station_3-post" }
local tmp = h.tmpdir()

-- An independent reader: Python's json module.
local oracle = tmp .. "/oracle.py"
h.write(oracle, [[
import json, sys
cmd = sys.argv[1]
def load(p):
    with open(p) as f:
        return json.load(f)
KNOWN = {
    "top": ["source", "creator", "proposal_id", "@id", "@context", "session_id", "route",
            "file_list", "hash", "signature", "build", "result_hash", "result_signature"],
    "source": ["type", "address", "tag", "branch"],
    "creator": ["id", "rsa_public_key", "paillier_public_key", "encrypted_key"],
    "stop": ["station", "eco_system", "rsa_public_key", "index", "signature", "encrypted_key"],
}
def with_nulls(d):
    """The reference's written form: every known key present, null when unset."""
    for k in KNOWN["top"]:
        d.setdefault(k, None)
    for part in ("source", "creator"):
        if isinstance(d.get(part), dict):
            for k in KNOWN[part]:
                d[part].setdefault(k, None)
    for s in d.get("route") or []:
        for k in KNOWN["stop"]:
            s.setdefault(k, None)
    return d
if cmd == "same":
    print("same" if load(sys.argv[2]) == load(sys.argv[3]) else "differ")
elif cmd == "same_with_nulls":
    print("same" if with_nulls(load(sys.argv[2])) == load(sys.argv[3]) else "differ")
elif cmd == "summary":
    d = load(sys.argv[2])
    print("creator", d["creator"]["id"])
    print("session", d["session_id"])
    for f in d["file_list"]:
        print("file", f)
    for s in sorted(d["route"], key=lambda s: s["index"]):
        sig = s.get("signature") or {}
        print("stop", s["index"], s["station"], s["eco_system"], s["rsa_public_key"],
              sig.get("digest", "-"), sig.get("signature", "-"), s.get("encrypted_key") or "-")
elif cmd == "mutate":
    d = load(sys.argv[2])
    exec(sys.argv[3])
    with open(sys.argv[4], "w") as f:
        json.dump(d, f, indent=2)
elif cmd == "eval":
    print(json.dumps(eval(sys.argv[3], {"d": load(sys.argv[2])})))
]])

local function py(...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = h.q(a) end
  return (h.run("python3 " .. h.q(oracle) .. " " .. table.concat(args, " ")):gsub("\n$", ""))
end

local function stage_path(stage)
  local path = tmp .. "/" .. stage .. ".json"
  h.run("tar xOf " .. h.q(h.vectors .. "/" .. stage .. ".opt.tar") .. " opt/train_config.json > " .. h.q(path))
  return path
end

local paths = {}
for _, s in ipairs(stages) do paths[s] = stage_path(s) end
local stage1 = h.read(paths[stages[2]])

local count = 0
local function tmpfile(text)
  count = count + 1
  local p = string.format("%s/doc-%d.json", tmp, count)
  h.write(p, text)
  return p
end

-- The JSON text of stage 1 after a Python statement changed the dict `d`.
local function mutated(stmt, base)
  count = count + 1
  local out = string.format("%s/mut-%d.json", tmp, count)
  py("mutate", base or paths[stages[2]], stmt, out)
  return h.read(out)
end

-- stage 1's text with one plain substring replaced.
local function replaced(from, to)
  local i, j = stage1:find(from, 1, true)
  assert(i, "fixture has no " .. from)
  return stage1:sub(1, i - 1) .. to .. stage1:sub(j + 1)
end

local function expect_error(text, code, message)
  local cfg, err, c = pht.parse_config(text)
  assert.is_nil(cfg)
  assert.are.equal(code, c)
  assert.is_truthy(err:find(message, 1, true), "message was: " .. tostring(err))
end

-- Hex in Lua, so the fixtures' bytes reach the config without libpht's help.
local function pht_hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- The same summary as the oracle's, from pht.config.
local function summary(cfg)
  local lines = { "creator " .. cfg:creator_id(), "session " .. pht_hex(cfg:session_id()) }
  for _, f in ipairs(cfg:file_list()) do lines[#lines + 1] = "file " .. f end
  for _, s in ipairs(cfg:route()) do
    local sig = s.signature or {}
    lines[#lines + 1] = table.concat({ "stop", s.index, s.station, s.eco_system, s.rsa_public_key,
      sig.digest or "-", sig.signature or "-", s.encrypted_key or "-" }, " ")
  end
  return table.concat(lines, "\n")
end

local function pem_hex(path)
  return pht_hex(h.read(path))
end

describe("config:to_json in the reference's layout", function()
  it("writes signature and encrypted_key as null for stops that have not run, as the reference does", function()
    local cfg = assert(pht.load_config(paths[stages[1]]))
    assert.are.equal('{"signature": null, "encrypted_key": null}',
      py("eval", tmpfile(cfg:to_json()), "{k: d['route'][2][k] for k in ('signature', 'encrypted_key')}"))
    assert.are.equal("null", py("eval", tmpfile(cfg:to_json()), "d['result_hash']"))
    assert.are.equal("false", py("eval", tmpfile(cfg:to_json(false)), "'signature' in d['route'][2]"))
  end)
end)

describe("pht.parse_config on the reference trains", function()
  for n, stage in ipairs(stages) do
    it("parses and validates " .. stage, function()
      local cfg, err = pht.parse_config(h.read(paths[stage]))
      assert.is_nil(err)
      assert.are.equal("pht.config", getmetatable(cfg).__name)
      assert.is_true(cfg:validate())
    end)

    it("reads the creator id, session id, file_list and route of " .. stage .. " as Python does", function()
      local cfg = assert(pht.load_config(paths[stage]))
      assert.are.equal(py("summary", paths[stage]), summary(cfg))
      assert.are.equal(64, #cfg:session_id())
      assert.are.same({ "station_1", "station_2", "station_3" },
        { cfg:route()[1].station, cfg:route()[2].station, cfg:route()[3].station })
      -- a stop is signed once its station has run
      for i, s in ipairs(cfg:route()) do assert.are.equal(i < n, s.signature ~= nil) end
    end)

    it("round-trips " .. stage .. " through to_json, indented and not", function()
      local cfg = assert(pht.load_config(paths[stage]))
      for _, indent in ipairs({ true, false }) do
        local text = cfg:to_json(indent)
        -- Indented is the reference's layout: every known key, null when unset.
        assert.are.equal("same", py(indent and "same_with_nulls" or "same", paths[stage], tmpfile(text)))
        local again = assert(pht.parse_config(text))
        assert.are.equal(summary(cfg), summary(again))
        assert.are.equal(cfg:to_json(), again:to_json())
      end
    end)
  end

  it("writes the stages the reference wrote byte for byte as it did", function()
    for n = 2, 4 do
      local text = h.read(paths[stages[n]])
      assert.are.equal(text, assert(pht.parse_config(text)):to_json())
    end
  end)

  it("indents with two spaces and writes no whitespace with to_json(false)", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.matches('^{\n  "source": {\n    "type": "docker_repository",', cfg:to_json())
    assert.is_nil(cfg:to_json(false):find("[\n ]"))
  end)

  it("gives stage 1's result_hash and chain digest as expected.json lists them", function()
    local expected = h.vectors .. "/expected.json"
    local cfg = assert(pht.parse_config(stage1))
    assert.are.equal(py("eval", expected, "d['stations'][0]['result_hash']"), '"' .. cfg:get("result_hash") .. '"')
    assert.are.equal(py("eval", expected, "d['stations'][0]['chain_digest']"),
      '"' .. cfg:stop("station_1").signature.digest .. '"')
    assert.are.equal(py("eval", expected, "d['hash']"), '"' .. cfg:get("hash") .. '"')
  end)

  it("gives top-level fields as Lua values with get", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.are.same({ type = "docker_repository", address = "pht-bench/ref-0", tag = "latest" }, cfg:get("source"))
    assert.are.equal("bench", cfg:get("proposal_id"))
    assert.are.same({ "entrypoint.sh", "analysis.r" }, cfg:get("file_list"))
    assert.are.equal(1, cfg:get("route")[2].index)
    assert.is_nil(cfg:get("no_such_field"))
    local stage0 = assert(pht.load_config(paths[stages[1]]))
    assert.is_nil(stage0:get("result_hash"))
  end)
end)

describe("pht.config keeps what it does not know", function()
  it("keeps unknown keys at the top level and inside source, creator, route stops and build", function()
    local text = mutated([[
d["x-top"] = {"a": [1, None, "s"]}
d["source"]["x-src"] = 1
d["creator"]["x-creator"] = True
d["route"][1]["x-stop"] = {"k": "v"}
d["build"]["x-build"] = None
]])
    local cfg = assert(pht.parse_config(text))
    local out = cfg:to_json()
    assert.are.equal("same", py("same", tmpfile(text), tmpfile(out)))
    assert.are.equal("same", py("same", tmpfile(text), tmpfile(cfg:to_json(false))))
    assert.are.same({ a = { 1, nil, "s" } }, cfg:get("x-top"))
    -- known keys first in the reference's order, unknown ones after
    assert.is_truthy(out:find('"result_signature": "%x+",\n  "x%-top"'))
  end)

  it("reads integer ids as decimal text and writes them back as integers", function()
    local text = mutated([[
d["creator"]["id"] = 1234567890123456
d["proposal_id"] = 17
d["route"][1]["station"] = 7
]])
    local cfg = assert(pht.parse_config(text))
    assert.are.equal("1234567890123456", cfg:creator_id())
    assert.are.equal("7", cfg:route()[2].station)
    assert.are.equal(1, cfg:stop(7).index)
    assert.are.equal(1, cfg:stop("7").index)
    assert.are.equal(17, cfg:get("proposal_id"))
    assert.are.equal("same", py("same", tmpfile(text), tmpfile(cfg:to_json())))
    assert.are.equal("1234567890123456", py("eval", tmpfile(cfg:to_json()), "d['creator']['id']"))
  end)

  it("orders a route listed out of order by index", function()
    local cfg = assert(pht.parse_config(mutated("d['route'].reverse()")))
    assert.are.same({ 0, 1, 2 }, { cfg:route()[1].index, cfg:route()[2].index, cfg:route()[3].index })
    assert.are.equal("station_1", cfg:route()[1].station)
  end)

  it("accepts the padme and aac ecosystems and file names with a leading ./", function()
    local cfg = assert(pht.parse_config(mutated([[
d["route"][0]["eco_system"] = "padme"
d["route"][1]["eco_system"] = "aac"
d["file_list"] = ["./entrypoint.sh", "dir/analysis.r"]
]])))
    assert.are.equal("padme", cfg:route()[1].eco_system)
    assert.are.equal("aac", cfg:route()[2].eco_system)
    assert.are.same({ "./entrypoint.sh", "dir/analysis.r" }, cfg:file_list())
  end)

  it("accepts a PKCS#1 public key (BEGIN RSA PUBLIC KEY) as the desktop app writes it", function()
    local pem = h.run("openssl rsa -pubin -in " .. h.q(h.vectors .. "/keys/station_2.pub.pem") .. " -RSAPublicKey_out 2>/dev/null")
    assert.matches("BEGIN RSA PUBLIC KEY", pem)
    local cfg = assert(pht.parse_config(mutated('d["route"][1]["rsa_public_key"] = "' .. pht_hex(pem) .. '"')))
    assert.are.equal(pht_hex(pem), cfg:stop("station_2").rsa_public_key)
  end)
end)

describe("a config shaped like the central service's (spec/fixtures/configs)", function()
  local path = h.fixtures .. "/configs/central-integer-ids.json"

  it("validates and reads integer ids as text, the route sorted by index", function()
    local cfg = assert(pht.load_config(path))
    assert.are.equal(py("summary", path), summary(cfg))
    assert.are.equal("4711", cfg:creator_id())
    assert.are.same({ "100", "101", "102" }, { cfg:route()[1].station, cfg:route()[2].station, cfg:route()[3].station })
    assert.are.equal("aac", cfg:stop(101).eco_system)
    assert.are.equal("-----BEGIN RSA PUBLIC KEY-----\n",
      h.run("printf '%s' " .. h.q(cfg:stop(101).rsa_public_key) .. " | xxd -r -p | head -1"))
    assert.are.same({ "./entrypoint.sh", "./analysis.r" }, cfg:file_list())
    assert.is_nil(cfg:get("@context"))
    assert.are.same({ created_at = "2021-03-01T10:00:00Z", tags = { "a", "b" } }, cfg:get("x-central"))
  end)

  it("writes it back, indented or not, as the same document for Python", function()
    local cfg = assert(pht.load_config(path))
    assert.are.equal("same", py("same_with_nulls", path, tmpfile(cfg:to_json())))
    assert.are.equal("same", py("same", path, tmpfile(cfg:to_json(false))))
    assert.are.equal("4711", py("eval", tmpfile(cfg:to_json()), "d['creator']['id']"))
    assert.are.equal("null", py("eval", tmpfile(cfg:to_json()), "d['route'][0]['x-stop-note']"))
  end)
end)

describe("pht.parse_config refuses", function()
  it("a creator.id that is neither string nor integer", function()
    expect_error(mutated('d["creator"]["id"] = ["x"]'), "ECONFIG", "creator.id: expected string or integer, got array")
  end)
  it("a creator.id that is a fraction", function()
    expect_error(mutated('d["creator"]["id"] = 1.5'), "ECONFIG", "creator.id: expected string or integer, got number 1.5")
  end)
  it("an integer id beyond 2^53", function()
    expect_error(replaced('"id": "bench-user"', '"id": 12345678901234567890'), "ECONFIG", "creator.id: integer 12345678901234567168 is beyond 2^53")
  end)
  it("a station id that is an object", function()
    expect_error(mutated('d["route"][2]["station"] = {}'), "ECONFIG", "route[2].station: expected string or integer, got object")
  end)
  it("an empty station id", function()
    expect_error(mutated('d["route"][1]["station"] = ""'), "ECONFIG", "route[1].station: empty id")
  end)
  it("a session_id that is a number", function()
    expect_error(mutated('d["session_id"] = 5'), "ECONFIG", "session_id: expected hex, got number")
  end)
  it("a session_id of 32 bytes", function()
    expect_error(mutated('d["session_id"] = d["session_id"][:64]'), "ECONFIG", "session_id: expected 64 bytes of hex, got 32")
  end)
  it("a hash that is not hex", function()
    expect_error(mutated('d["hash"] = "x" + d["hash"][1:]'), "ECONFIG", "hash: not hex (bad character at offset 0)")
  end)
  it("a signature of odd length", function()
    expect_error(mutated('d["signature"] = d["signature"][1:]'), "ECONFIG", "signature: not hex (odd length 511)")
  end)
  it("an empty build.signature", function()
    expect_error(mutated('d["build"]["signature"] = ""'), "ECONFIG", "build.signature: expected hex, got an empty string")
  end)
  it("a result_hash that is a number", function()
    expect_error(mutated('d["result_hash"] = 7'), "ECONFIG", "result_hash: expected hex or null, got number")
  end)
  it("a result_signature that is not hex", function()
    expect_error(mutated('d["result_signature"] = "nothex"'), "ECONFIG", "result_signature: not hex")
  end)
  it("a route key that is not hex", function()
    expect_error(mutated('d["route"][1]["rsa_public_key"] = "zz" + d["route"][1]["rsa_public_key"][2:]'), "ECONFIG", "route[1].rsa_public_key: not hex")
  end)
  it("a route key whose hex is no PEM", function()
    expect_error(mutated('d["route"][1]["rsa_public_key"] = "41424344"'), "ECONFIG", "route[1].rsa_public_key: not a usable public key")
  end)
  it("a creator key of 1024 bits", function()
    local pem = h.run("openssl genrsa 1024 2>/dev/null | openssl rsa -pubout 2>/dev/null")
    assert.matches("BEGIN PUBLIC KEY", pem)
    expect_error(mutated('d["creator"]["rsa_public_key"] = "' .. pht_hex(pem) .. '"'), "ECONFIG",
      "creator.rsa_public_key: not a usable public key: public key: RSA key of 1024 bits")
  end)
  it("a build key that is a private key", function()
    local pem = h.read(h.key_path("builder"))
    expect_error(mutated('d["build"]["rsa_public_key"] = "' .. pht_hex(pem) .. '"'), "ECONFIG", "build.rsa_public_key: not a usable public key")
  end)
  it("a stop signature that is a string", function()
    expect_error(mutated('d["route"][0]["signature"] = "ab"'), "ECONFIG", "route[0].signature: expected object {digest, signature} or null, got string")
  end)
  it("a stop signature digest that is not hex", function()
    expect_error(mutated('d["route"][0]["signature"]["digest"] = "g" * 128'), "ECONFIG", "route[0].signature.digest: not hex")
  end)
  it("a stop signature without its signature", function()
    expect_error(mutated('del d["route"][1]["signature"]["signature"]', paths[stages[3]]), "ECONFIG", "route[1].signature.signature: missing (required)")
  end)
  it("a stop encrypted_key that is a number", function()
    expect_error(mutated('d["route"][2]["encrypted_key"] = 3'), "ECONFIG", "route[2].encrypted_key: expected hex or null, got number")
  end)
  it("a creator encrypted_key that is not hex", function()
    expect_error(mutated('d["creator"]["encrypted_key"] = "key"'), "ECONFIG", "creator.encrypted_key: not hex")
  end)
  it("two stops with the same index", function()
    expect_error(mutated('d["route"][1]["index"] = 0'), "ECONFIG",
      "route[1].index: duplicate index 0 (also at route[0]; indexes must be unique and contiguous from 0)")
  end)
  it("a route with an index missing", function()
    expect_error(mutated('d["route"][2]["index"] = 3'), "ECONFIG", "route: index 2 missing (indexes must be unique and contiguous from 0)")
  end)
  it("a negative index", function()
    expect_error(mutated('d["route"][0]["index"] = -1'), "ECONFIG", "route[0].index: expected a non-negative integer, got -1")
  end)
  it("an index that is a string", function()
    expect_error(mutated('d["route"][2]["index"] = "2"'), "ECONFIG", "route[2].index: expected a non-negative integer, got string")
  end)
  it("an empty route", function()
    expect_error(mutated('d["route"] = []'), "ECONFIG", "route: empty (a train needs at least one stop)")
  end)
  it("a station on the route twice", function()
    expect_error(mutated('d["route"][2]["station"] = "station_1"'), "ECONFIG", 'route[2].station: station "station_1" is on the route twice (also at route[0])')
  end)
  it("an unknown ecosystem", function()
    expect_error(mutated('d["route"][0]["eco_system"] = "mars"'), "ECONFIG", 'route[0].eco_system: expected "tue", "padme" or "aac", got "mars"')
  end)
  it("an unknown source type", function()
    expect_error(mutated('d["source"]["type"] = "ftp"'), "ECONFIG", 'source.type: expected "docker_repository" or "git_repository", got "ftp"')
  end)
  it("a source tag that is a number", function()
    expect_error(mutated('d["source"]["tag"] = 1'), "ECONFIG", "source.tag: expected string or null, got number")
  end)
  it("a file_list that is a string", function()
    expect_error(mutated('d["file_list"] = "entrypoint.sh"'), "ECONFIG", "file_list: expected array of strings, got string")
  end)
  it("a file_list entry that is a number", function()
    expect_error(mutated('d["file_list"][1] = 2'), "ECONFIG", "file_list[1]: expected string, got number")
  end)
  it("an absolute file name", function()
    expect_error(mutated('d["file_list"][0] = "/etc/passwd"'), "EUNSAFE", 'file_list[0]: absolute path "/etc/passwd"')
  end)
  it("a file name that climbs out with ..", function()
    expect_error(mutated('d["file_list"][1] = "./a/../../x"'), "EUNSAFE", 'file_list[1]: ".." component in "./a/../../x"')
  end)
  it("a file name that is ..", function()
    expect_error(mutated('d["file_list"][0] = ".."'), "EUNSAFE", 'file_list[0]: ".." component')
  end)
  it("an empty file name", function()
    expect_error(mutated('d["file_list"][0] = ""'), "ECONFIG", "file_list[0]: empty name")
  end)
  it("a file name with an empty component", function()
    expect_error(mutated('d["file_list"][0] = "a//b"'), "ECONFIG", 'file_list[0]: empty path component in "a//b"')
  end)
  it("a file name with a . component", function()
    expect_error(mutated('d["file_list"][0] = "a/./b"'), "ECONFIG", 'file_list[0]: "." component in "a/./b"')
  end)
  it("a file name that ends in /", function()
    expect_error(mutated('d["file_list"][0] = "dir/"'), "ECONFIG", 'file_list[0]: trailing "/" in "dir/" (names must be files)')
  end)
  it("a file listed twice, once with ./", function()
    expect_error(mutated('d["file_list"].append("./analysis.r")'), "ECONFIG", 'file_list[2]: "analysis.r" is listed twice (also at file_list[1])')
  end)
  for _, field in ipairs({ "creator", "session_id", "route", "file_list", "hash", "signature", "build" }) do
    it("a document without " .. field, function()
      expect_error(mutated('del d["' .. field .. '"]'), "ECONFIG", field .. ": missing (required)")
    end)
  end
  for _, field in ipairs({ "creator.id", "creator.rsa_public_key", "build.signature", "build.rsa_public_key", "source.address" }) do
    it("a document without " .. field, function()
      local obj, key = field:match("^(%w+)%.(.+)$")
      expect_error(mutated('del d["' .. obj .. '"]["' .. key .. '"]'), "ECONFIG", field .. ": missing (required)")
    end)
  end
  it("a stop without rsa_public_key", function()
    expect_error(mutated('del d["route"][1]["rsa_public_key"]'), "ECONFIG", "route[1].rsa_public_key: missing (required)")
  end)
  it("a key spelled in another case (keys are case-sensitive)", function()
    expect_error(mutated('d["Hash"] = d.pop("hash")'), "ECONFIG", "hash: missing (required)")
  end)
  it("a duplicate top-level key", function()
    expect_error(replaced('"proposal_id": "bench",', '"proposal_id": "bench", "proposal_id": "other",'), "ECONFIG", 'train_config.json: duplicate key "proposal_id"')
  end)
  it("a duplicate key inside creator", function()
    expect_error(replaced('"id": "bench-user",', '"id": "bench-user", "id": "mallory",'), "ECONFIG", 'creator: duplicate key "id"')
  end)
  it("truncated JSON", function()
    expect_error(stage1:sub(1, -2), "EFORMAT",
      "train_config.json: not valid JSON (error near byte " .. (#stage1 - 2) .. " of " .. (#stage1 - 1) .. ", where the text ends: truncated?)")
  end)
  it("JSON cut in the middle of a string", function()
    expect_error(stage1:sub(1, 5000), "EFORMAT", "train_config.json: not valid JSON (error near byte")
  end)
  it("text that is not JSON", function()
    expect_error("hash = 1", "EFORMAT", "train_config.json: not valid JSON (error near byte 0 of 8)")
  end)
  it("text after the document", function()
    expect_error(stage1 .. "\n{}", "EFORMAT", "train_config.json: not valid JSON (extra text after the document at byte " .. (#stage1 + 1) .. ")")
  end)
  it("a NUL byte in the text", function()
    expect_error(replaced('"bench-user"', '"bench\0-user"'), "EFORMAT", "train_config.json: NUL byte at offset")
  end)
  it("an empty text", function()
    expect_error("", "EFORMAT", "train_config.json: empty, not JSON")
  end)
  it("a JSON array", function()
    expect_error("[" .. stage1 .. "]", "ECONFIG", "train_config.json: expected a JSON object, got array")
  end)
  it("JSON null", function()
    expect_error("null", "ECONFIG", "train_config.json: expected a JSON object, got null")
  end)
  it("a text over 16 MiB", function()
    expect_error(stage1 .. string.rep(" ", 16 * 1024 * 1024), "ELIMIT", "over the limit of 16777216 bytes (16 MiB)")
  end)
end)

describe("pht.load_config", function()
  it("loads a train_config.json file", function()
    local cfg = assert(pht.load_config(paths[stages[2]]))
    assert.are.equal("bench-user", cfg:creator_id())
  end)
  it("refuses a file over 16 MiB without reading it", function()
    local path = tmp .. "/big.json"
    h.run("truncate -s " .. (16 * 1024 * 1024 + 1) .. " " .. h.q(path))
    local cfg, err, code = pht.load_config(path)
    assert.is_nil(cfg)
    assert.are.equal("ELIMIT", code)
    assert.are.equal(path .. ": 16777217 bytes, over the limit of 16777216 bytes (16 MiB) for train_config.json", err)
  end)
  it("names the file when it does not exist", function()
    local cfg, err, code = pht.load_config(tmp .. "/absent.json")
    assert.is_nil(cfg)
    assert.are.equal("ENOTFOUND", code)
    assert.matches("absent.json: cannot open", err)
  end)
  it("names the file and the field when the document is invalid", function()
    local cfg, err, code = pht.load_config(tmpfile(mutated('d["hash"] = None')))
    assert.is_nil(cfg)
    assert.are.equal("ECONFIG", code)
    assert.matches("%.json: hash: expected hex, got null$", err)
  end)
end)

describe("pht.config lookups", function()
  it("finds a stop by station id", function()
    local cfg = assert(pht.parse_config(stage1))
    local stop = cfg:stop("station_2")
    assert.are.equal(1, stop.index)
    assert.are.equal(pem_hex(h.vectors .. "/keys/station_2.pub.pem"), stop.rsa_public_key)
    assert.is_nil(stop.signature)
    assert.is_string(stop.encrypted_key)
  end)
  it("answers a station that is not on the route with ENOTFOUND", function()
    local cfg = assert(pht.parse_config(stage1))
    local stop, err, code = cfg:stop("station_9")
    assert.is_nil(stop)
    assert.are.equal("station station_9 is not on the route", err)
    assert.are.equal("ENOTFOUND", code)
  end)
  it("raises on a station id of the wrong type", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.has_error(function() cfg:stop({}) end)
  end)
end)

describe("pht.config setters", function()
  local result_hash = string.rep("ab", 64)

  it("set result_hash and result_signature, lowercasing hex", function()
    local cfg = assert(pht.load_config(paths[stages[1]]))
    assert.is_true(cfg:set("result_hash", result_hash:upper()))
    assert.is_true(cfg:set("result_signature", "0A0B"))
    assert.are.equal(result_hash, cfg:get("result_hash"))
    assert.are.equal('"0a0b"', py("eval", tmpfile(cfg:to_json()), "d['result_signature']"))
  end)
  it("refuse a result_hash that is not 64 bytes and leave the config unchanged", function()
    local cfg = assert(pht.parse_config(stage1))
    local before = cfg:to_json()
    local ok, err, code = cfg:set("result_hash", "abcd")
    assert.is_nil(ok)
    assert.are.equal("result_hash: expected 64 bytes of hex, got 2", err)
    assert.are.equal("ECONFIG", code)
    assert.are.equal(before, cfg:to_json())
  end)
  it("write nil as JSON null", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.is_true(cfg:set("result_signature", nil))
    assert.are.equal("null", py("eval", tmpfile(cfg:to_json()), "d['result_signature']"))
  end)
  it("set other scalar fields, keeping the known ones' rules", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.is_true(cfg:set("proposal_id", 12))
    assert.is_true(cfg:set("x-note", "hello"))
    assert.is_true(cfg:set("x-flag", false))
    assert.are.equal("12", py("eval", tmpfile(cfg:to_json()), "d['proposal_id']"))
    assert.are.equal("false", py("eval", tmpfile(cfg:to_json()), "d['x-flag']"))
    local ok, err = cfg:set("hash", "00")
    assert.is_nil(ok)
    assert.are.equal("hash: expected 64 bytes of hex, got 1", err)
    ok, err = cfg:set("@id", 5)
    assert.is_nil(ok)
    assert.are.equal("@id: expected string or null, got number", err)
  end)
  it("raise on a number beyond the integers, on every engine", function()
    local cfg = assert(pht.parse_config(stage1))
    for _, n in ipairs({ 1e300, -1e300, 0 / 0, 1.5 }) do
      local ok, err = pcall(cfg.set, cfg, "proposal_id", n)
      assert.is_false(ok)
      assert.matches("integer expected, got a fraction", err)
    end
  end)

  it("refuse to replace an object field", function()
    local cfg = assert(pht.parse_config(stage1))
    local ok, err, code = cfg:set("route", "x")
    assert.is_nil(ok)
    assert.are.equal("ECONFIG", code)
    assert.matches("^route: not a scalar field", err)
  end)
  it("raise on a value that is not a scalar", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.has_error(function() cfg:set("x", {}) end)
    assert.has_error(function() cfg:set("x", 1.5) end)
  end)
  it("set a stop's signature, ordered like the reference writes it", function()
    local cfg = assert(pht.load_config(paths[stages[1]]))
    assert.is_true(cfg:set_stop_signature(1, result_hash, "beef"))
    local sig = cfg:route()[2].signature
    assert.are.same({ digest = result_hash, signature = "beef" }, sig)
    assert.is_truthy(cfg:to_json():find('"index": 1,\n      "signature": {\n        "digest": "', 1, true))
    assert.is_true(cfg:set_stop_signature(1, nil, nil))
    assert.is_nil(cfg:route()[2].signature)
  end)
  it("refuse a stop signature with a short digest", function()
    local cfg = assert(pht.parse_config(stage1))
    local ok, err, code = cfg:set_stop_signature(2, "00", "beef")
    assert.is_nil(ok)
    assert.are.equal("route[2].signature.digest: expected 64 bytes of hex, got 1", err)
    assert.are.equal("ECONFIG", code)
  end)
  it("refuse a stop index that is not on the route", function()
    local cfg = assert(pht.parse_config(stage1))
    local ok, err, code = cfg:set_stop_key(3, "beef")
    assert.is_nil(ok)
    assert.are.equal("ENOTFOUND", code)
    assert.are.equal("route has no stop with index 3 (3 stops)", err)
  end)
  it("set a stop's encrypted_key and the creator's", function()
    local cfg = assert(pht.load_config(paths[stages[1]]))
    assert.is_true(cfg:set_stop_key(2, "c0ffee"))
    assert.is_true(cfg:set_creator_key("F00D"))
    assert.are.equal("c0ffee", cfg:stop("station_3").encrypted_key)
    assert.are.equal("f00d", cfg:get("creator").encrypted_key)
    assert.is_true(cfg:set_stop_key(2, nil))
    assert.is_nil(cfg:stop("station_3").encrypted_key)
    local ok, err = cfg:set_creator_key("xyz")
    assert.is_nil(ok)
    assert.matches("^creator.encrypted_key: not hex", err)
  end)
end)

describe("pht.new_config", function()
  local function fields_of(cfg)
    local route = {}
    for i, s in ipairs(cfg:route()) do
      route[i] = { station = s.station, eco_system = s.eco_system, rsa_public_key = s.rsa_public_key,
        encrypted_key = s.encrypted_key }
    end
    local creator = cfg:get("creator")
    return {
      ["@id"] = cfg:get("@id"), ["@context"] = cfg:get("@context"), source = cfg:get("source"),
      creator = { id = creator.id, rsa_public_key = creator.rsa_public_key },
      proposal_id = cfg:get("proposal_id"), session_id = cfg:get("session_id"), route = route,
      file_list = cfg:file_list(), hash = cfg:get("hash"), signature = cfg:get("signature"),
      build = cfg:get("build"),
    }
  end

  it("builds stage 0's train from its fields, with nulls for what is not set yet", function()
    local cfg = assert(pht.load_config(paths[stages[1]]))
    local built = assert(pht.new_config(fields_of(cfg)))
    local expected = mutated([[
d["source"]["branch"] = None
d["creator"]["encrypted_key"] = None
for s in d["route"]:
    s["signature"] = None
    s.setdefault("encrypted_key", None)
d["result_hash"] = None
d["result_signature"] = None
]], paths[stages[1]])
    assert.are.equal("same", py("same_with_nulls", tmpfile(expected), tmpfile(built:to_json())))
    assert.matches('^{\n  "source": {\n    "type": "docker_repository",\n    "address": ', built:to_json())
  end)

  it("writes integer ids as integers", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f.creator.id = 42
    f.route[2].station = 7
    local built = assert(pht.new_config(f))
    assert.are.equal("42", built:creator_id())
    assert.are.equal(1, built:stop(7).index)
    assert.are.equal("42", py("eval", tmpfile(built:to_json()), "d['creator']['id']"))
  end)

  it("names a missing required field", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f.hash = nil
    local cfg, err, code = pht.new_config(f)
    assert.is_nil(cfg)
    assert.are.equal("hash: missing (required)", err)
    assert.are.equal("ECONFIG", code)
  end)

  it("names a field of the wrong type", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f.route[1].station = {}
    local cfg, err, code = pht.new_config(f)
    assert.is_nil(cfg)
    assert.are.equal("route[0].station: expected string or integer, got table", err)
    assert.are.equal("ECONFIG", code)
  end)

  it("refuses a stop whose index is not its place in the list", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f.route[1].index = 2
    local cfg, err = pht.new_config(f)
    assert.is_nil(cfg)
    assert.are.equal("route[0].index: expected 0 (list the stops in route order)", err)
  end)

  it("refuses an @context holding a value JSON cannot hold", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f["@context"] = { x = print }
    local cfg, err, code = pht.new_config(f)
    assert.is_nil(cfg)
    assert.are.equal("@context: cannot encode function", err)
    assert.are.equal("ECONFIG", code)
  end)

  it("refuses an @context holding an infinite number instead of writing it as null", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f["@context"] = { x = 1 / 0 }
    local cfg, err, code = pht.new_config(f)
    assert.is_nil(cfg)
    assert.are.equal("@context: cannot encode number is not finite", err)
    assert.are.equal("ECONFIG", code)
  end)

  it("writes an @context of nested objects and arrays as given", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f["@context"] = { vocab = "https://example.org/", list = { 1, "two", { three = true } } }
    local built = assert(pht.new_config(f))
    assert.are.equal('[["list", [1, "two", {"three": true}]], ["vocab", "https://example.org/"]]',
      py("eval", tmpfile(built:to_json()), "sorted(d['@context'].items())"))
  end)

  it("validates what it builds", function()
    local f = fields_of(assert(pht.parse_config(stage1)))
    f.file_list = { "../escape" }
    local cfg, err, code = pht.new_config(f)
    assert.is_nil(cfg)
    assert.are.equal("EUNSAFE", code)
    assert.matches('^file_list%[0%]: ".." component', err)
  end)
end)

describe("a pht.config handle", function()
  it("closes once, twice is fine, and refuses use afterwards", function()
    local cfg = assert(pht.parse_config(stage1))
    assert.matches("^pht.config: ", tostring(cfg))
    cfg:close()
    cfg:close()
    assert.has_error(function() cfg:to_json() end, "attempt to use a closed pht.config")
  end)
end)
