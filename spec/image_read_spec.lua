-- Reading images without a daemon: the reference trains' /opt as Docker
-- lists it, layer history, whiteouts, opaque directories, gzip and zstd
-- layers, OCI layouts and streamed reads.
local pht = require "pht"
local h = require "helpers"
local B = dofile(h.fixtures .. "/images/build.lua")

local stages = { "stage0-built", "stage1-station_1-post", "stage2-station_2-post", "stage3-station_3-post" }

-- The image's /opt in walk order, in the oracle's shape.
local function opt_listing(img)
  local st = assert(img:stat("/opt"))
  local out = { { name = "opt", type = "dir", size = 0, mode = st.mode, mtime = st.mtime, sha512 = "" } }
  for _, e in ipairs(assert(img:walk("/opt"))) do
    local hex = ""
    if e.type == "file" then hex = pht.hex(pht.sha512(assert(img:read_file("/opt/" .. e.path)))) end
    out[#out + 1] = { name = "opt/" .. e.path, type = e.type, size = e.type == "file" and e.size or 0,
      mode = e.mode, mtime = e.mtime, sha512 = hex }
  end
  return out
end

-- Which layers the open hashed: { true, false, ... } bottom first.
local function verified(img)
  local v = {}
  for i, l in ipairs(img:layers()) do v[i] = l.verified end
  return v
end

describe("pht.open_image on the reference docker-archives", function()
  for _, stage in ipairs(stages) do
    it("reads " .. stage .. "'s /opt exactly as Docker's archive endpoint lists it", function()
      local path = h.vectors .. "/" .. stage .. ".tar"
      local before = h.sha256_file(path)
      local img = assert(pht.open_image("docker-archive:" .. path))
      local want = B.list_tar(h.vectors .. "/" .. stage .. ".opt.tar")
      assert.are.same(want, opt_listing(img))
      local names = {}
      for _, m in ipairs(want) do names[#names + 1] = m.name end
      assert.truthy(table.concat(names, " "):find("opt/train_config.json", 1, true))
      img:close()
      assert.are.equal(before, h.sha256_file(path))
    end)
  end

  it("lists a directory's children in walk order (a before a-c)", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage1-station_1-post.tar"))
    assert.are.same({ "a", "a-c.txt", "count.txt" }, img:list("/opt/pht_results"))
    local paths = {}
    for _, e in ipairs(img:walk("/opt/pht_results")) do paths[#paths + 1] = e.path end
    assert.are.same({ "a", "a/b.txt", "a/numbers.txt", "a-c.txt", "count.txt" }, paths)
  end)

  it("exposes manifest, config and per-layer history", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage1-station_1-post.tar:pht-bench/ref-0:latest"))
    assert.are.equal("docker-archive", img:transport())
    assert.truthy(img:manifest():find('"RepoTags":["pht-bench/ref-0:latest"]', 1, true))
    local layers = img:layers()
    assert.are.equal(3, #layers)
    assert.are.equal("Imported from -", layers[1].comment)
    assert.are.equal("/bin/sh /opt/pht_train/entrypoint.sh", layers[3].created_by)
    assert.truthy(img:image_config():find(layers[3].diff_id, 1, true))
    -- docker save stores plain tar layers: blob digest == diff_id == sha256 of the member
    local tmp = h.tmpdir()
    h.run("tar -xf " .. h.q(h.vectors .. "/stage1-station_1-post.tar") .. " -C " .. h.q(tmp))
    local member = img:manifest():match('"Layers":%["([^"]+)"')
    assert.is_true(layers[1].verified) -- it holds /opt: hashed at open, the digest computed
    assert.are.equal("sha256:" .. h.sha256_file(tmp .. "/" .. member), layers[1].digest)
    assert.are.equal(layers[1].digest, layers[1].diff_id)
  end)

  it("stats files, symlinks and missing paths", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage0-built.tar"))
    local st = assert(img:stat("/bin/sh"))
    assert.are.equal("symlink", st.type)
    assert.are.equal("busybox", st.link)
    assert.are.equal("dir", img:stat("/").type)
    local none, msg, code = img:stat("/opt/nothing")
    assert.is_nil(none)
    assert.are.equal("ENOTFOUND", code)
    assert.truthy(msg:find("/opt/nothing", 1, true))
  end)

  it("streams a file in chunks with open_file", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage0-built.tar"))
    local r = assert(img:open_file("/bin/busybox"))
    img:close() -- the reader keeps the image alive
    local parts, n = {}, 0
    while true do
      local chunk = r:read(65536)
      if not chunk then break end
      n = n + #chunk
      parts[#parts + 1] = pht.sha512(chunk) -- touch the bytes
    end
    r:close()
    assert.are.equal(1982256, n)
  end)

  it("refuses read_file above max_bytes with ELIMIT", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage0-built.tar"))
    local data, msg, code = img:read_file("/opt/train_config.json", 100)
    assert.is_nil(data)
    assert.are.equal("ELIMIT", code)
    assert.matches("^/opt/train_config.json is %d+ bytes, over the 100%-byte limit of this read$", msg)
  end)

  it("extracts a subtree to disk byte for byte", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage2-station_2-post.tar"))
    local dest = h.tmpdir() .. "/out"
    assert(img:extract("/opt/pht_results", dest))
    local want = h.tmpdir()
    h.run("tar -xf " .. h.q(h.vectors .. "/stage2-station_2-post.opt.tar") .. " -C " .. h.q(want))
    h.run("diff -r " .. h.q(want .. "/opt/pht_results") .. " " .. h.q(dest))
  end)

  it("names the missing tag and rejects an ambiguous reference", function()
    local img, msg, code = pht.open_image("docker-archive:" .. h.vectors .. "/stage0-built.tar:nope:v1")
    assert.is_nil(img)
    assert.are.equal("ENOTFOUND", code)
    assert.truthy(msg:find("nope:v1", 1, true))
    img, msg, code = pht.open_image("containers-storage:busybox:latest")
    assert.is_nil(img)
    assert.are.equal("EINVAL", code)
  end)
end)

describe("merged filesystem of layered images", function()
  local dir
  before_each(function() dir = h.tmpdir() end)

  local function base_layer(compression)
    return { compression = compression, entries = {
      { name = "opt/", type = "dir" },
      { name = "opt/pht_results/", type = "dir" },
      { name = "opt/pht_results/old.txt", data = "old results" },
      { name = "opt/pht_results/sub/", type = "dir" },
      { name = "opt/pht_results/sub/deep.txt", data = "deep" },
      { name = "opt/keep.txt", data = "keep" },
      { name = "opt/gone.txt", data = "gone" },
      { name = "opt/gonedir/", type = "dir" },
      { name = "opt/gonedir/x", data = "x" },
    } }
  end

  it("hides a file and a directory tree behind .wh. whiteouts", function()
    local path = B.make { out = dir .. "/wh.tar", tag = "t:1", layers = { base_layer("none"),
      { entries = { { name = "opt/.wh.gone.txt" }, { name = "opt/.wh.gonedir" } } } } }
    local before = h.sha256_file(path)
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.same({ "keep.txt", "pht_results" }, img:list("/opt"))
    assert.are.equal("ENOTFOUND", select(3, img:stat("/opt/gonedir/x")))
    assert.are.equal(before, h.sha256_file(path))
  end)

  -- A big layer outside /opt below the base layer: indexed by its headers, never hashed.
  local function outside_layer()
    return { entries = { { name = "srv/", type = "dir" }, { name = "srv/big", zeros = 4 * 1024 * 1024 },
      { name = "srv/small", data = "after the big file" } } }
  end

  it("hashes the layers that hold or delete /opt and indexes the others by their headers", function()
    local path = B.make { out = dir .. "/mixed.tar", layers = { outside_layer(), base_layer("none"),
      { entries = { { name = "opt/.wh.pht_results" } } }, { entries = { { name = "srv/other", data = "o" } } } } }
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.same({ false, true, true, false }, verified(img))
    assert.is_nil(img:stat("/opt/pht_results"))
    assert.are.equal("keep", img:read_file("/opt/keep.txt"))
    assert.are.equal("after the big file", img:read_file("/srv/small"))
    assert.are.equal(4 * 1024 * 1024, img:stat("/srv/big").size)
    img = assert(pht.open_image("docker-archive:" .. path, { verify_layers = true }))
    assert.are.same({ true, true, true, true }, verified(img))
  end)

  it("applies an upper layer's whiteout of /opt itself over unhashed layers", function()
    local path = B.make { out = dir .. "/whopt.tar", layers = { base_layer("none"), outside_layer(),
      { entries = { { name = ".wh.opt" } } } } }
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.same({ true, false, true }, verified(img))
    assert.are.equal("ENOTFOUND", select(3, img:stat("/opt")))
    assert.are.equal("after the big file", img:read_file("/srv/small"))
  end)

  it("hashes a layer whose opaque marker at the root could hide /opt", function()
    local path = B.make { out = dir .. "/opqroot.tar", layers = { base_layer("none"), outside_layer(),
      { entries = { { name = ".wh..wh..opq" }, { name = "etc/", type = "dir" } } } } }
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.same({ true, false, true }, verified(img))
  end)

  it("hides all lower content of an opaque directory but keeps its own layer's files", function()
    local path = B.make { out = dir .. "/opq.tar", layers = { base_layer("none"),
      { entries = { { name = "opt/pht_results/", type = "dir", mode = tonumber("700", 8) },
                    { name = "opt/pht_results/new.txt", data = "new" },
                    { name = "opt/pht_results/.wh..wh..opq" } } } } }
    local before = h.sha256_file(path)
    local img = assert(pht.open_image("docker-archive:" .. path))
    local paths = {}
    for _, e in ipairs(img:walk("/opt/pht_results")) do paths[#paths + 1] = e.path end
    assert.are.same({ "new.txt" }, paths)
    assert.are.equal(tonumber("700", 8), img:stat("/opt/pht_results").mode)
    assert.are.equal("keep", img:read_file("/opt/keep.txt"))
    assert.are.equal(before, h.sha256_file(path))
  end)

  it("lets an upper file replace a lower directory and its subtree", function()
    local path = B.make { out = dir .. "/rep.tar", layers = { base_layer("none"),
      { entries = { { name = "opt/pht_results", data = "now a file" } } } } }
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.equal("file", img:stat("/opt/pht_results").type)
    assert.are.equal("ENOTFOUND", select(3, img:stat("/opt/pht_results/old.txt")))
    assert.are.equal("now a file", img:read_file("/opt/pht_results"))
  end)

  for _, comp in ipairs({ "gzip", "zstd" }) do
    it("reads " .. comp .. " layers of an OCI layout and verifies their digests", function()
      local path = B.make { format = "oci", out = dir .. "/oci-" .. comp, tag = "v1",
        layers = { base_layer(comp), { compression = comp, entries = { { name = "opt/.wh.gone.txt" },
          { name = "opt/keep.txt", data = "kept, changed" } } } } }
      local blobs = h.run("cd " .. h.q(path) .. " && find . -type f | sort | xargs sha256sum")
      local img = assert(pht.open_image("oci:" .. path .. ":v1"))
      local layers = img:layers()
      assert.are.equal("application/vnd.oci.image.layer.v1.tar+" .. comp, layers[1].media_type)
      assert.are_not.equal(layers[1].digest, layers[1].diff_id)
      assert.are.equal("kept, changed", img:read_file("/opt/keep.txt"))
      assert.are.equal("deep", img:read_file("/opt/pht_results/sub/deep.txt"))
      assert.is_nil(img:stat("/opt/gone.txt"))
      assert.are.equal(blobs, h.run("cd " .. h.q(path) .. " && find . -type f | sort | xargs sha256sum"))
    end)

    it("reads " .. comp .. " layers inside a docker-archive", function()
      local path = B.make { out = dir .. "/arc-" .. comp .. ".tar", layers = { base_layer(comp) } }
      local before = h.sha256_file(path)
      local img = assert(pht.open_image("docker-archive:" .. path))
      assert.are.equal("old results", img:read_file("/opt/pht_results/old.txt"))
      assert.are.equal(comp, img:layers()[1].media_type:match("%+(%w+)$"))
      assert.are.equal(before, h.sha256_file(path))
    end)
  end

  it("reads images with empty layers, plain and gzip", function()
    local path = B.make { out = dir .. "/empty.tar", layers = { base_layer("none"), { entries = {} },
      { compression = "gzip", entries = {} } } }
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.equal(3, #img:layers())
    assert.are.equal("keep", img:read_file("/opt/keep.txt"))
  end)

  it("hashes a plain OCI layer outside /opt only with verify_layers", function()
    local path = B.make { format = "oci", out = dir .. "/plain", tag = "v1",
      layers = { outside_layer(), base_layer("none") } }
    local img = assert(pht.open_image("oci:" .. path .. ":v1"))
    local blob = path .. "/blobs/sha256/" .. img:layers()[1].digest:sub(8)
    img:close()
    h.replace_bytes(blob, "after", "AFTER")
    img = assert(pht.open_image("oci:" .. path .. ":v1"))
    assert.are.same({ false, true }, verified(img))
    assert.are.equal("AFTER the big file", img:read_file("/srv/small"))
    local before = h.sha256_file(blob)
    local img2, msg, code = pht.open_image("oci:" .. path .. ":v1", { verify_layers = true })
    assert.is_nil(img2)
    assert.are.equal("EVERIFY", code)
    assert.truthy(msg:find("does not match its", 1, true), msg)
    assert.are.equal(before, h.sha256_file(blob))
  end)

  it("rejects an OCI layer whose blob does not match its digest", function()
    local path = B.make { format = "oci", out = dir .. "/bad", tag = "v1", layers = { base_layer("gzip") } }
    local img = assert(pht.open_image("oci:" .. path .. ":v1"))
    local blob = path .. "/blobs/sha256/" .. img:layers()[1].digest:sub(8)
    img:close()
    local before = h.sha256_file(blob)
    -- same size, one byte flipped inside the gzip trailer (CRC)
    h.run("printf '\\377' | dd of=" .. h.q(blob) .. " bs=1 seek=$(( $(stat -c %s " .. h.q(blob) .. ") - 6 )) conv=notrunc status=none")
    assert.are_not.equal(before, h.sha256_file(blob))
    local img2, msg, code = pht.open_image("oci:" .. path .. ":v1")
    assert.is_nil(img2)
    assert.truthy(code == "EVERIFY" or code == "EFORMAT", code)
    assert.truthy(msg:find("layer sha256:", 1, true), msg)
  end)
end)

describe("the index cache of compressed layers", function()
  local dir, cache
  before_each(function()
    dir = h.tmpdir()
    cache = dir .. "/cache"
  end)

  -- An OCI layout: a gzip layer outside /opt below a gzip layer holding /opt.
  local function layout()
    return B.make { format = "oci", out = dir .. "/oci", tag = "v1", layers = {
      { compression = "gzip", entries = { { name = "srv/", type = "dir" },
        { name = "srv/big", zeros = 2 * 1024 * 1024 }, { name = "srv/note", data = "outside /opt" },
        { name = "srv/link", type = "symlink", link = "note" } } },
      { compression = "gzip", entries = { { name = "opt/", type = "dir" }, { name = "opt/x", data = "x" } } } } }
  end

  local function open(path, opts)
    opts = opts or {}
    opts.cache_dir = opts.cache_dir or cache
    return pht.open_image("oci:" .. path .. ":v1", opts)
  end

  -- Open path once (filling the cache); the cache file of its lower layer.
  local function cached_file(path)
    return cache .. "/" .. assert(open(path)):layers()[1].digest:sub(8)
  end

  local function entries()
    local out = h.run("ls " .. h.q(cache) .. " 2>/dev/null")
    local names = {}
    for name in out:gmatch("%S+") do names[#names + 1] = name end
    return names
  end

  it("keeps the headers of a verified layer outside /opt, by digest, and reads them back unhashed", function()
    local path = layout()
    local img = assert(open(path))
    local first = img:layers()
    assert.are.same({ true, true }, verified(img))
    assert.are.same({ first[1].digest:sub(8) }, entries())
    local walk = img:walk("/")
    img = assert(open(path))
    assert.are.same({ false, true }, verified(img))
    assert.are.same(walk, img:walk("/"))
    assert.are.equal(first[1].diff_size, img:layers()[1].diff_size)
    assert.are.equal("outside /opt", img:read_file("/srv/note"))
    assert.are.equal("note", img:stat("/srv/link").link)
    assert.are.equal("x", img:read_file("/opt/x"))
  end)

  it("is bypassed by verify_layers, which hashes the cached layer again", function()
    local path = layout()
    local img = assert(open(path))
    local blob = path .. "/blobs/sha256/" .. img:layers()[1].digest:sub(8)
    img:close()
    -- same size, one byte of the gzip trailer (its CRC) changed
    h.run("printf '\\377' | dd of=" .. h.q(blob) .. " bs=1 seek=$(( $(stat -c %s " .. h.q(blob) .. ") - 6 )) conv=notrunc status=none")
    assert.are.same({ false, true }, verified(assert(open(path))))
    local img2, msg, code = open(path, { verify_layers = true })
    assert.is_nil(img2)
    assert.truthy(code == "EVERIFY" or code == "EFORMAT", code)
    assert.truthy(msg:find("layer sha256:", 1, true), msg)
  end)

  it("applies every header check to what the cache says", function()
    local path = layout()
    local file = cached_file(path)
    h.write(file, (h.read(file):gsub('"p":"srv/note"', '"p":"../etc/passwd"')))
    local img, msg, code = open(path)
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "../etc/passwd": path leaves the image root', 1, true), msg)
  end)

  it("treats an entry that is cut short, names /opt or another diff_id as a miss and rewrites it", function()
    local path = layout()
    local file = cached_file(path)
    local good = h.read(file)
    local cut = (good:gsub("{\"end\".*$", ""))
    local opt = (good:gsub('"p":"srv/note"', '"p":"opt/note"'))
    local other = (good:gsub('"diff_id":"sha256:%x+"', '"diff_id":"sha256:' .. string.rep("0", 64) .. '"'))
    for _, bad in ipairs({ cut, opt, other }) do
      assert.are_not.equal(good, bad)
      h.write(file, bad)
      local img = assert(open(path))
      assert.are.same({ true, true }, verified(img))
      assert.are.equal("outside /opt", img:read_file("/srv/note"))
      assert.are.equal(good, h.read(file))
    end
  end)

  it("neither reads nor fills a cache directory that others may write", function()
    local path = layout()
    assert(open(path))
    h.run("chmod 0777 " .. h.q(cache))
    assert.are.same({ true, true }, verified(assert(open(path))))
    h.run("rm -f " .. h.q(cache) .. "/*")
    assert.are.same({ true, true }, verified(assert(open(path))))
    assert.are.same({}, entries())
  end)
end)
