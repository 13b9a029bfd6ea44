-- Reading a file in place: a file of a plain tar layer is read with pread at
-- the offset the layer's index learned for it (img:in_place), whatever
-- headers come before it (pax records, GNU long names, a ustar prefix) and
-- whatever its size is against the 512-byte blocks; what it reads is byte
-- for byte what Python's tarfile wrote. A compressed layer or a sparse file
-- is not read in place, and reads the same through the layer's stream.
local h = require "helpers"
local pht = require "pht"
local B = dofile(h.fixtures .. "/images/build.lua")

local q = h.q

-- n printable bytes that differ with seed (mkimage.py writes data as text).
local function payload(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char(32 + (i * 31 + seed) % 95) end
  return table.concat(t)
end

local LONG = "opt/" .. ("d"):rep(150) .. "/deep.bin"
local FILES = {
  { "opt/one", 1 }, { "opt/block-1", 511 }, { "opt/block", 512 }, { "opt/block+1", 513 },
  { "opt/empty", 0 }, { "opt/big", 300000 }, { LONG, 1000 }, { "opt/caf\195\169-\195\188.txt", 77 },
}

-- The layer's entries and what each path must read as.
local function layer_entries()
  local entries, want = { { name = "opt", type = "dir" } }, {}
  for i, f in ipairs(FILES) do
    local data = payload(f[2], i)
    entries[#entries + 1] = { name = f[1], data = data }
    want[f[1]] = data
  end
  -- a hard link to a file of the layer, and a name written twice (the second wins)
  entries[#entries + 1] = { name = "opt/link", type = "hardlink", link = "opt/block+1" }
  want["opt/link"] = want["opt/block+1"]
  entries[#entries + 1] = { name = "opt/twice", data = payload(700, 90) }
  entries[#entries + 1] = { name = "opt/twice", data = payload(300, 91) }
  want["opt/twice"] = payload(300, 91)
  return entries, want
end

local function open(kind, path)
  return assert(pht.open_image((kind == "oci" and "oci:" or "docker-archive:") .. path))
end

describe("a file of a plain tar layer", function()
  local dir
  setup(function() dir = h.tmpdir() end)
  teardown(function() h.run("rm -rf " .. q(dir)) end)

  for _, format in ipairs({ "pax", "gnu", "ustar" }) do
    for _, kind in ipairs({ "docker-archive", "oci" }) do
      it("is read in place and reads what the tar holds (" .. format .. " headers, " .. kind .. ")", function()
        local entries, want = layer_entries()
        local out = dir .. "/" .. format .. "-" .. kind .. (kind == "oci" and "" or ".tar")
        B.make { format = kind, out = out, tag = "t/in-place:latest",
          layers = { { format = format, entries = entries } } }
        local img = open(kind, out)
        assert.is_true(img:in_place("/opt"))
        for path, data in pairs(want) do
          assert.is_true(img:in_place("/" .. path), path)
          local got = assert(img:read_file("/" .. path))
          assert.equal(#data, #got, path)
          assert.is_true(got == data, path .. " reads other bytes")
          -- read in pieces, the reader ends exactly at the file's end
          local r = assert(img:open_file("/" .. path))
          local parts = {}
          while true do
            local chunk = r:read(4096)
            if not chunk then break end
            parts[#parts + 1] = chunk
          end
          r:close()
          assert.is_true(table.concat(parts) == data, path .. " read in pieces")
        end
        img:close()
      end)
    end
  end

  it("of a gzip layer is not read in place, and reads the same through the stream", function()
    local entries, want = layer_entries()
    local out = dir .. "/gzip"
    B.make { format = "oci", out = out, layers = { { compression = "gzip", entries = entries } } }
    local img = open("oci", out)
    assert.is_false(img:in_place("/opt"))
    assert.is_true(img:in_place("/opt/empty")) -- nothing to read
    for path, data in pairs(want) do
      assert.is_true(assert(img:read_file("/" .. path)) == data, path)
    end
    img:close()
  end)

  it("of a gzip layer in walk order is read in order: one file after another goes on where the last stopped",
    function()
    local entries, want = layer_entries()
    local out = dir .. "/gzip-order"
    B.make { format = "oci", out = out, layers = { { compression = "gzip", entries = {
      { name = "opt", type = "dir" }, { name = "opt/a", data = payload(5000, 1) },
      { name = "opt/b", data = payload(70000, 2) }, { name = "opt/c", data = payload(3, 3) } } } } }
    local img = open("oci", out)
    assert.is_true(img:in_order("/opt"))
    -- a reader left half read, then a later file, then an earlier one (which starts afresh)
    local r = assert(img:open_file("/opt/a"))
    assert.equal(payload(5000, 1):sub(1, 10), r:read(10))
    r:close()
    assert.is_true(img:read_file("/opt/b") == payload(70000, 2))
    assert.is_true(img:read_file("/opt/c") == payload(3, 3))
    assert.is_true(img:read_file("/opt/a") == payload(5000, 1))
    img:close()
    -- the layer_entries tar names opt/twice after opt/one..., not in walk order
    local shuffled = dir .. "/gzip-shuffled"
    B.make { format = "oci", out = shuffled, layers = { { compression = "gzip", entries = entries } } }
    img = open("oci", shuffled)
    assert.is_false(img:in_order("/opt"))
    for path, data in pairs(want) do assert.is_true(img:read_file("/" .. path) == data, path) end
    img:close()
  end)

  it("of a gzip layer read in order goes on from the last reader: it never reads the layer's start again",
    function()
    local out = dir .. "/gzip-cursor"
    B.make { format = "oci", out = out, layers = {
      { compression = "gzip", entries = { { name = "opt", type = "dir" }, { name = "opt/x", data = payload(9000, 9) } } },
      { compression = "gzip", entries = { { name = "opt/a", data = payload(70000, 1) },
        { name = "opt/b", data = payload(70000, 2) }, { name = "opt/c", data = payload(70000, 3) } } } } }
    local img = open("oci", out)
    assert.is_true(img:in_order("/opt"))
    -- a reader of the lower layer first, then one of the upper layer's first file
    assert.is_true(img:read_file("/opt/x") == payload(9000, 9))
    assert.is_true(img:read_file("/opt/a") == payload(70000, 1))
    -- spoil the first bytes of the upper layer's blob: only a reader starting afresh sees them
    local index = pht.json_decode(h.read(out .. "/index.json"))
    local m = pht.json_decode(h.read(out .. "/blobs/sha256/" .. index.manifests[1].digest:sub(8)))
    local blob = out .. "/blobs/sha256/" .. m.layers[2].digest:sub(8)
    h.run("dd if=/dev/zero of=" .. q(blob) .. " bs=64 count=1 conv=notrunc status=none")
    local key = pht.new_symkey()
    local w = assert(img:writer())
    assert(w:add_encrypted("/opt/eb", "/opt/b", key, { image = img }))
    assert(w:add_encrypted("/opt/ec", "/opt/c", key, { image = img }))
    local again, err = img:read_file("/opt/a") -- an earlier file starts afresh: the spoiled start
    assert.is_nil(again)
    assert.is_truthy(err)
    img:close()
  end)

  it("that GNU tar stored sparse is not read in place, and reads whole through the stream", function()
    local src = dir .. "/sparse-src"
    h.run("mkdir -p " .. q(src .. "/opt"))
    -- 1 MiB with data at its start and end and a hole between
    local file = src .. "/opt/sparse.bin"
    h.run("truncate -s 1M " .. q(file) .. " && printf head | dd of=" .. q(file) .. " conv=notrunc status=none"
      .. " && printf tail | dd of=" .. q(file) .. " bs=1 seek=1048572 conv=notrunc status=none")
    h.write(src .. "/opt/plain.txt", "plain\n")
    local tar = dir .. "/sparse.tar"
    h.run("tar --format=gnu --sparse -cf " .. q(tar) .. " -C " .. q(src) .. " opt")
    -- the member is sparse (Python's tarfile reads GNU's sparse headers)
    assert.equal("True", h.run("python3 -c " .. q("import sys, tarfile; "
      .. "print(tarfile.open(sys.argv[1]).getmember('opt/sparse.bin').issparse())") .. " " .. q(tar)):match("%S+"))
    local out = dir .. "/sparse-image.tar"
    B.make { format = "docker-archive", out = out, tag = "t/sparse:latest", layers = { { tar = tar } } }
    local img = open("docker-archive", out)
    assert.is_true(img:in_place("/opt/plain.txt"))
    assert.is_false(img:in_place("/opt/sparse.bin"))
    assert.is_false(img:in_place("/opt"))
    local got = assert(img:read_file("/opt/sparse.bin"))
    assert.equal(1048576, #got)
    assert.is_true(got == h.read(file), "the sparse file reads other bytes")
    assert.equal("plain\n", img:read_file("/opt/plain.txt"))
    img:close()
  end)
end)
