local pht = require "pht"
local h = require "helpers"

describe("pht filesystem helpers", function()
  it("mkdtemp creates a new private directory under the given parent", function()
    local parent = h.tmpdir()
    local a = assert(pht.mkdtemp(parent))
    local b = assert(pht.mkdtemp(parent))
    assert.are_not.equal(a, b)
    assert.are.equal(parent, a:match("^(.*)/pht%.[^/]+$"))
    assert.are.equal("drwx------", h.run("stat -c %A " .. h.q(a)):match("%S+"))
  end)

  it("mkdtemp names the parent when it cannot create the directory", function()
    local ok, err, code = pht.mkdtemp("/nonexistent/parent")
    assert.is_nil(ok)
    assert.are.equal("EIO", code)
    assert.matches("/nonexistent/parent", err, 1, true)
  end)

  it("mkdir with parents creates the whole path and accepts an existing one", function()
    local dir = h.tmpdir() .. "/x/y/z"
    assert.is_true(pht.mkdir(dir, tonumber("750", 8), true))
    assert.is_true(pht.mkdir(dir, tonumber("750", 8), true))
    assert.are.equal("drwxr-x---", h.run("stat -c %A " .. h.q(dir)):match("%S+"))
    local ok, err = pht.mkdir(dir)
    assert.is_nil(ok)
    assert.matches("File exists", err)
  end)

  it("remove_tree removes a tree but never follows a symlink out of it", function()
    local outside = h.tmpdir()
    h.write(outside .. "/keep.txt", "keep")
    local dir = h.tmpdir()
    h.run("mkdir -p " .. h.q(dir .. "/a/b") .. " && echo x > " .. h.q(dir .. "/a/b/f")
      .. " && ln -s " .. h.q(outside) .. " " .. h.q(dir .. "/a/link"))
    assert.is_true(pht.remove_tree(dir))
    assert.is_false((h.sh("test -e " .. h.q(dir))))
    assert.are.equal("keep", h.read(outside .. "/keep.txt"))
    assert.is_true(pht.remove_tree(dir)) -- already gone is fine
  end)

  it("remove_tree refuses the root directory", function()
    local ok, err, code = pht.remove_tree("/")
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.matches("refusing", err)
  end)

  it("write_file creates a new file with the mode and refuses to overwrite", function()
    local path = h.tmpdir() .. "/secret"
    assert.is_true(pht.write_file(path, "abc\0def", tonumber("600", 8)))
    assert.are.equal("abc\0def", h.read(path))
    assert.are.equal("-rw-------", h.run("stat -c %A " .. h.q(path)):match("%S+"))
    local ok, err = pht.write_file(path, "again")
    assert.is_nil(ok)
    assert.matches("File exists", err)
    assert.are.equal("abc\0def", h.read(path))
  end)
end)

describe("pht JSON helpers", function()
  it("encode objects with sorted keys, arrays, numbers, booleans and null", function()
    local text = assert(pht.json_encode({ b = { 1, 2.5, true }, a = "x\"y", c = pht.null }))
    assert.are.equal('{"a":"x\\"y","b":[1,2.5,true],"c":null}', text)
  end)

  it("decode what python3's json module writes", function()
    local dir = h.tmpdir()
    h.run("python3 -c 'import json,sys; json.dump({\"s\":\"\\u00e9\",\"n\":[1,None,3],\"o\":{\"k\":False}}, open(sys.argv[1],\"w\"))' "
      .. h.q(dir .. "/x.json"))
    local v = assert(pht.json_decode(h.read(dir .. "/x.json")))
    assert.are.equal("\195\169", v.s)
    assert.are.equal(1, v.n[1])
    assert.are.equal(pht.null, v.n[2])
    assert.are.equal(3, v.n[3])
    assert.is_false(v.o.k)
  end)

  it("round-trips through python3's json module", function()
    local value = { route = { { station = "s1", index = 0 }, { station = "s2", index = 1 } }, n = 12345678901 }
    local dir = h.tmpdir()
    h.write(dir .. "/in.json", assert(pht.json_encode(value)))
    local out = h.run("python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d, sort_keys=True, separators=(\",\",\":\")))' "
      .. h.q(dir .. "/in.json"))
    assert.are.same(value, assert(pht.json_decode(out)))
  end)

  it("returns nil and a message for malformed JSON", function()
    local v, err, code = pht.json_decode('{"a": [1, 2')
    assert.is_nil(v)
    assert.are.equal("EFORMAT", code)
    assert.matches("malformed JSON", err)
  end)

  it("refuses values JSON cannot hold", function()
    local v, err = pht.json_encode({ f = print })
    assert.is_nil(v)
    assert.matches("cannot encode function", err)
    local t = {}
    t.self = t
    v, err = pht.json_encode(t)
    assert.is_nil(v)
    assert.matches("too deep", err)
  end)
end)
