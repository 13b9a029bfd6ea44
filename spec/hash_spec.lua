-- SHA-512, the e_h/e_d builders, the chain digest and the walk order
-- (doc/protocol.md §4, §5), checked against sha512sum and GNU tar.
local pht = require "pht"
local h = require "helpers"

-- sha512sum of a file, as raw bytes.
local function sha512sum(path)
  local hex = h.run("sha512sum " .. h.q(path)):match("^(%x+)")
  return assert(pht.unhex(hex))
end

local function bytes(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 131 + seed * 7 + (i * i) % 251) % 256) end
  return table.concat(t)
end

describe("pht.sha512", function()
  it("equals sha512sum for empty, short and binary inputs", function()
    local dir = h.tmpdir()
    for i, data in ipairs({ "", "abc", bytes(100000, 3) }) do
      local path = dir .. "/in" .. i
      h.write(path, data)
      assert.are.equal(sha512sum(path), pht.sha512(data))
    end
  end)

  it("returns 64 raw bytes", function()
    assert.are.equal(64, #pht.sha512("x"))
  end)
end)

describe("pht.hasher", function()
  it("streams chunks to the same digest as sha512sum", function()
    local data = bytes(200000, 5)
    local path = h.tmpdir() .. "/data"
    h.write(path, data)
    local hs = pht.hasher()
    local pos, step = 1, 1
    while pos <= #data do
      hs:update(data:sub(pos, pos + step - 1))
      pos, step = pos + step, step * 2 + 1
    end
    assert.are.equal(sha512sum(path), hs:digest())
  end)

  it("returns itself from update, for chaining", function()
    local hs = pht.hasher()
    assert.are.equal(hs, hs:update("a"))
    assert.are.equal(pht.sha512("abc"), hs:update("b"):update("c"):digest())
  end)

  it("hashes a file across 64 KiB chunk boundaries with update_file", function()
    local path = h.tmpdir() .. "/big"
    h.write(path, bytes(3 * 65536 + 17, 9))
    local hs = pht.hasher()
    assert.is_true(hs:update_file(path))
    assert.are.equal(sha512sum(path), hs:digest())
  end)

  it("names the file and the reason when update_file cannot read it", function()
    local hs = pht.hasher()
    local ok, err, code = hs:update_file("/nonexistent/file.bin")
    assert.is_nil(ok)
    assert.are.equal("EIO", code)
    assert.matches("/nonexistent/file.bin: cannot open: No such file", err, 1, true)
  end)

  it("refuses to be fed after digest", function()
    local hs = pht.hasher()
    hs:digest()
    local ok, err, code = hs:update("more")
    assert.is_nil(ok)
    assert.are.equal("ESTATE", code)
    assert.matches("update after final", err)
  end)

  it("refuses a second digest", function()
    local hs = pht.hasher()
    hs:digest()
    local d, err, code = hs:digest()
    assert.is_nil(d)
    assert.are.equal("ESTATE", code)
    assert.matches("final called twice", err)
  end)

  it("raises on a closed hasher", function()
    local hs = pht.hasher()
    hs:close()
    hs:close()
    assert.has_error(function() hs:update("x") end, "attempt to use a closed pht.hash")
  end)

  it("shows its type in tostring", function()
    assert.matches("^pht.hash: ", tostring(pht.hasher()))
  end)

  it("raises on a non-string chunk", function()
    assert.has_error(function() pht.hasher():update({}) end)
  end)
end)

-- The concatenation of parts, hashed by sha512sum from a file.
local function oracle(parts)
  local path = h.tmpdir() .. "/concat"
  h.write(path, table.concat(parts))
  return sha512sum(path)
end

describe("pht.immutable_hasher", function()
  local sid = bytes(64, 1)
  local f1, f2, query = bytes(70000, 2), "print('hi')\n", '{"query": 1}'

  it("hashes creator id, files, session id and query.json in that order", function()
    local eh = pht.immutable_hasher("creator-7", sid)
    eh:update(f1):update(f2)
    assert.is_true(eh:begin_query())
    eh:update(query)
    assert.are.equal(oracle({ "creator-7", f1, f2, sid, query }), eh:digest())
  end)

  it("hashes an integer creator id as its decimal text", function()
    local eh = pht.immutable_hasher(4711, sid)
    eh:update(f2)
    assert.are.equal(oracle({ "4711", f2, sid }), eh:digest())
  end)

  it("adds the session id last when the train has no query.json", function()
    local eh = pht.immutable_hasher("c", sid)
    eh:update(f1)
    assert.are.equal(oracle({ "c", f1, sid }), eh:digest())
  end)

  it("feeds files with update_file", function()
    local dir = h.tmpdir()
    h.write(dir .. "/a", f1)
    h.write(dir .. "/q", query)
    local eh = pht.immutable_hasher("c", sid)
    assert.is_true(eh:update_file(dir .. "/a"))
    eh:begin_query()
    assert.is_true(eh:update_file(dir .. "/q"))
    assert.are.equal(oracle({ "c", f1, sid, query }), eh:digest())
  end)

  it("refuses begin_query twice", function()
    local eh = pht.immutable_hasher("c", sid)
    eh:begin_query()
    local ok, err, code = eh:begin_query()
    assert.is_nil(ok)
    assert.are.equal("ESTATE", code)
    assert.matches("called twice", err)
  end)

  it("raises on a creator id that is neither string nor integer", function()
    assert.has_error(function() pht.immutable_hasher({}, sid) end)
    assert.has_error(function() pht.immutable_hasher(1.5, sid) end)
  end)
end)

describe("pht.results_hasher", function()
  it("hashes the results in the order fed, then the session id", function()
    local sid = bytes(64, 4)
    local ed = pht.results_hasher(sid)
    ed:update("one"):update("two")
    assert.are.equal(oracle({ "one", "two", sid }), ed:digest())
  end)

  it("has no query part", function()
    local ok, err, code = pht.results_hasher("s"):begin_query()
    assert.is_nil(ok)
    assert.are.equal("ESTATE", code)
    assert.matches("only the immutable hash", err)
  end)
end)

describe("pht.walk_sort", function()
  it("puts a/b.txt before a-c.txt", function()
    assert.are.same({ "a/b.txt", "a-c.txt" }, pht.walk_sort({ "a-c.txt", "a/b.txt" }))
  end)

  it("orders a tree as GNU tar --sort=name walks it", function()
    local dir = h.tmpdir() .. "/tree"
    local files = { "a/b.txt", "a-c.txt", "a.d/e", "a/x/y", "a/x-y", "B", "z", "a/x.y/z",
                    "sp ace", "dash-", "dash/in", "\195\169t\195\169" }
    for _, f in ipairs(files) do
      local path = dir .. "/" .. f
      h.run("mkdir -p " .. h.q(path:match("^(.*)/")))
      h.write(path, f)
    end
    local listed = {}
    local out = h.run("cd " .. h.q(dir) .. " && tar --sort=name -cf - . | tar --quoting-style=literal -tvf -")
    for line in out:gmatch("[^\n]+") do
      local path = line:match(" %./(.+)$")
      if line:sub(1, 1) == "-" and path then listed[#listed + 1] = path end
    end
    assert.are.equal(#files, #listed)
    assert.are.same(listed, pht.walk_sort(files))
  end)

  it("returns a new array and leaves the input as it was", function()
    local input = { "b", "a" }
    local out = pht.walk_sort(input)
    assert.are.same({ "b", "a" }, input)
    assert.are.same({ "a", "b" }, out)
  end)

  it("raises on an element that is not a string", function()
    assert.has_error(function() pht.walk_sort({ "a", 1 }) end)
  end)

  it("raises on a path with a NUL byte instead of returning it cut short", function()
    local ok, err = pcall(pht.walk_sort, { "b", "a\0hidden" })
    assert.is_false(ok)
    assert.matches("a path contains a NUL byte", err)
  end)
end)

describe("pht.chain_digest", function()
  it("is SHA-512 of previous digests then the result hash", function()
    local prev, ed = bytes(128, 6), pht.sha512("results")
    assert.are.equal(oracle({ prev, ed }), pht.chain_digest(prev, ed))
  end)

  it("refuses a result hash that is not 64 bytes", function()
    local d, err, code = pht.chain_digest("x", "short")
    assert.is_nil(d)
    assert.are.equal("EFORMAT", code)
    assert.matches("result hash is 5 bytes, expected 64", err)
  end)
end)

describe("pht.hex and pht.unhex", function()
  it("agree with od on every byte value", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    local path = h.tmpdir() .. "/all"
    h.write(path, all)
    local od = h.run("od -An -v -tx1 " .. h.q(path)):gsub("%s", "")
    assert.are.equal(od, pht.hex(all))
    assert.are.equal(all, pht.unhex(od))
    assert.are.equal(all, pht.unhex(od:upper()))
  end)

  it("refuses an odd length", function()
    local b, err, code = pht.unhex("abc")
    assert.is_nil(b)
    assert.are.equal("EFORMAT", code)
    assert.matches("odd length 3", err)
  end)

  it("refuses a non-hex character", function()
    local b, err, code = pht.unhex("0g")
    assert.is_nil(b)
    assert.are.equal("EFORMAT", code)
    assert.matches("not hex %(bad character at offset 1%)", err)
  end)
end)

describe("pht.random", function()
  it("returns n fresh bytes", function()
    assert.are.equal(0, #pht.random(0))
    local a, b = pht.random(32), pht.random(32)
    assert.are.equal(32, #a)
    assert.are_not.equal(a, b)
  end)

  it("raises on a negative or huge count", function()
    assert.has_error(function() pht.random(-1) end)
    assert.has_error(function() pht.random(2 ^ 21) end)
  end)
end)
