-- Writing images: a new layer, rebase onto REPO:base or the first N layers,
-- several tags in one archive, OCI layouts, and atomic replacement.
local pht = require "pht"
local h = require "helpers"

local function copy_fixture(name, dir)
  local to = dir .. "/" .. name
  h.run("cp " .. h.q(h.vectors .. "/" .. name) .. " " .. h.q(to))
  return to
end

-- manifest.json of a docker-archive, as tar reads it.
local function archive_manifest(path)
  return h.run("tar -xOf " .. h.q(path) .. " manifest.json")
end

local function paths_of(img, dir)
  local out = {}
  for _, e in ipairs(assert(img:walk(dir))) do out[#out + 1] = e.path end
  return out
end

describe("image writer", function()
  local dir
  before_each(function() dir = h.tmpdir() end)

  it("writes a new layer in place: opaque results, whiteout, files of every source", function()
    local path = copy_fixture("stage1-station_1-post.tar", dir)
    local ref = "docker-archive:" .. path .. ":pht-bench/ref-0:latest"
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer())
    assert(w:add_dir("/opt/pht_results", { opaque = true, mode = tonumber("755", 8), mtime = 1700000000 }))
    assert(w:add_bytes("/opt/pht_results/r.txt", "result\n", { mode = tonumber("600", 8), uid = 1000, gid = 1000 }))
    h.write(dir .. "/src.bin", string.rep("z", 200000))
    assert(w:add_file("/opt/pht_results/big.bin", dir .. "/src.bin"))
    local s = assert(w:begin_file("/opt/pht_results/known.enc", 6))
    assert(s:write("abc"):write("def"))
    assert(s:close())
    s = assert(w:begin_file("/opt/pht_results/spooled.enc"))
    for _ = 1, 10 do assert(s:write(string.rep("q", 10000))) end
    assert(s:close())
    assert(w:add_symlink("/opt/pht_results/link", "r.txt"))
    assert(w:whiteout("/opt/user_sym_key.key"))
    assert(w:commit(ref, { history = "pht post-run station_1", comment = "results" }))
    img:close()

    local out = assert(pht.open_image(ref))
    local layers = out:layers()
    assert.are.equal(4, #layers)
    assert.are.equal("pht post-run station_1", layers[4].created_by)
    assert.are.equal("results", layers[4].comment)
    assert.are.same({ "big.bin", "known.enc", "link", "r.txt", "spooled.enc" }, paths_of(out, "/opt/pht_results"))
    assert.is_nil(out:stat("/opt/user_sym_key.key"))
    local st = out:stat("/opt/pht_results/r.txt")
    assert.are.same({ tonumber("600", 8), 1000, 1000, 7 }, { st.mode, st.uid, st.gid, st.size })
    assert.are.equal(string.rep("z", 200000), out:read_file("/opt/pht_results/big.bin"))
    assert.are.equal("abcdef", out:read_file("/opt/pht_results/known.enc"))
    assert.are.equal(100000, #out:read_file("/opt/pht_results/spooled.enc"))
    assert.are.equal(1700000000, out:stat("/opt/pht_results").mtime)
    -- the new layer as GNU tar sees it: the opaque marker and the whiteout are entries
    local t = h.tmpdir()
    h.run("tar -xf " .. h.q(path) .. " -C " .. h.q(t))
    local listing = h.run("tar -tf " .. h.q(t .. "/" .. layers[4].diff_id:sub(8) .. ".tar"))
    assert.truthy(listing:find("opt/pht_results/.wh..wh..opq", 1, true))
    assert.truthy(listing:find("opt/.wh.user_sym_key.key", 1, true))
    -- digests and sizes: the config names the layer tar's sha256
    assert.are.equal(layers[4].diff_id, "sha256:" .. h.sha256_file(t .. "/" .. layers[4].diff_id:sub(8) .. ".tar"))
    local cfgname = archive_manifest(path):match('"Config":"([^"]+)"')
    assert.are.equal(cfgname:sub(1, 64), h.sha256_file(t .. "/" .. cfgname))
  end)

  it("keeps only the first N layers, dropping a marked pre-run layer", function()
    local path = copy_fixture("stage1-station_1-post.tar", dir)
    local img = assert(pht.open_image("docker-archive:" .. path))
    local layers = img:layers()
    local dropped = layers[3].diff_id
    local w = assert(img:writer { keep_layers = 2 })
    assert(w:add_bytes("/opt/train_config.json", "{}"))
    assert(w:commit("docker-archive:" .. path .. ":pht-bench/ref-0:latest"))
    local out = assert(pht.open_image("docker-archive:" .. path))
    assert.are.equal(3, #out:layers())
    assert.are.equal(layers[2].diff_id, out:layers()[2].diff_id)
    assert.is_nil(h.run("tar -tf " .. h.q(path)):find(dropped:sub(8), 1, true))
    assert.is_nil(out:stat("/opt/pht_results/count.txt")) -- it lived in the dropped layer
    assert.are.equal("{}", out:read_file("/opt/train_config.json"))
  end)

  it("rebases REPO:latest onto REPO:base in the same archive and keeps both tags", function()
    local path = copy_fixture("stage2-station_2-post.tar", dir)
    local latest = "docker-archive:" .. path .. ":pht-bench/ref-0:latest"
    local base = "docker-archive:" .. path .. ":pht-bench/ref-0:base"
    local img = assert(pht.open_image(latest))
    assert(assert(img:writer { keep_layers = 1 }):commit(base))
    local w = assert(img:writer { base = base })
    assert(w:add_dir("/opt/pht_results", { opaque = true }))
    assert(w:add_bytes("/opt/pht_results/only.txt", "only"))
    assert(w:commit(latest, { history = "pht post-run" }))
    local manifest = archive_manifest(path)
    assert.truthy(manifest:find('"pht-bench/ref-0:latest"', 1, true))
    assert.truthy(manifest:find('"pht-bench/ref-0:base"', 1, true))
    local out = assert(pht.open_image(latest))
    local b = assert(pht.open_image(base))
    assert.are.equal(2, #out:layers())
    assert.are.equal(b:layers()[1].diff_id, out:layers()[1].diff_id)
    assert.are.same({ "only.txt" }, out:list("/opt/pht_results"))
    assert.are.same({}, out:list("/opt/pht_train")) -- the base layer holds only the empty directory
  end)

  it("rebases onto a separately named base image", function()
    local path = copy_fixture("stage3-station_3-post.tar", dir)
    local basefile = copy_fixture("stage0-built.tar", dir)
    local img = assert(pht.open_image("docker-archive:" .. path))
    local baseimg = assert(pht.open_image("docker-archive:" .. basefile))
    local w = assert(img:writer { base = baseimg, keep_layers = 1 })
    baseimg:close() -- the writer holds it
    assert(w:add_bytes("/opt/new.txt", "new"))
    assert(w:commit("docker-archive:" .. dir .. "/out.tar:x/y:z"))
    local out = assert(pht.open_image("docker-archive:" .. dir .. "/out.tar:x/y:z"))
    assert.are.equal(2, #out:layers())
    assert.are.equal("new", out:read_file("/opt/new.txt"))
    assert.are.equal("dir", out:stat("/opt/pht_results").type)
    assert.is_nil(out:stat("/opt/train_config.json"))
  end)

  it("retags without changing the image", function()
    local path = copy_fixture("stage0-built.tar", dir)
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert(img:retag("docker-archive:" .. path .. ":pht-bench/ref-0:base", { "other/name:v1" }))
    local a = assert(pht.open_image("docker-archive:" .. path .. ":pht-bench/ref-0:base"))
    local b = assert(pht.open_image("docker-archive:" .. path .. ":other/name:v1"))
    local c = assert(pht.open_image("docker-archive:" .. path .. ":pht-bench/ref-0:latest"))
    assert.are.equal(img:image_config(), a:image_config())
    assert.are.equal(a:image_config(), b:image_config())
    assert.are.equal(img:image_config(), c:image_config())
  end)

  it("writes OCI layouts and keeps the other tags of the layout", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage1-station_1-post.tar"))
    local layout = dir .. "/layout"
    assert(img:retag("oci:" .. layout .. ":one"))
    local w = assert(img:writer())
    assert(w:add_bytes("/opt/extra", "extra"))
    assert(w:commit("oci:" .. layout .. ":two"))
    local one = assert(pht.open_image("oci:" .. layout .. ":one"))
    local two = assert(pht.open_image("oci:" .. layout .. ":two"))
    assert.are.equal(3, #one:layers())
    assert.are.equal(4, #two:layers())
    assert.are.equal("extra", two:read_file("/opt/extra"))
    assert.are.equal(img:read_file("/opt/train_config.json"), one:read_file("/opt/train_config.json"))
    -- every blob is named by its sha256
    for f in h.run("ls " .. h.q(layout .. "/blobs/sha256")):gmatch("%S+") do
      assert.are.equal(f, h.sha256_file(layout .. "/blobs/sha256/" .. f))
    end
  end)

  it("refuses to commit while a streamed file is short, leaving the input unchanged", function()
    local path = copy_fixture("stage1-station_1-post.tar", dir)
    local before = h.sha256_file(path)
    local img = assert(pht.open_image("docker-archive:" .. path))
    local w = assert(img:writer())
    local s = assert(w:begin_file("/opt/x", 10))
    assert(s:write("12345"))
    local ok, msg, code = s:close()
    assert.is_nil(ok)
    assert.are.equal("ESTATE", code)
    assert.truthy(msg:find("fewer bytes", 1, true))
    ok, msg, code = w:commit("docker-archive:" .. path)
    assert.is_nil(ok)
    assert.are.equal("ESTATE", code)
    assert.are.equal(before, h.sha256_file(path))
    assert.are.equal("stage1-station_1-post.tar\n", h.run("ls -A " .. h.q(dir)))
  end)

  it("raises on wrong argument types", function()
    local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage0-built.tar"))
    assert.has_error(function() img:writer { base = 42 } end)
    assert.has_error(function() img:writer():add_bytes("/x", {}) end)
  end)

  it("leaves the input byte-identical when the disk fills during a commit", function()
    local mnt = dir .. "/small"
    local mounted, why = h.mount_tmpfs(mnt, "3m")
    if not mounted then pending(why) return end
    -- Every handle on a file of the tmpfs is closed before it is unmounted
    -- (the writer keeps the image it was made from open).
    local img, w, again
    finally(function()
      if w then w:close() end
      if img then img:close() end
      if again then again:close() end
      h.umount(mnt)
    end)
    local path = copy_fixture("stage1-station_1-post.tar", dir)
    h.run("cp " .. h.q(path) .. " " .. h.q(mnt .. "/train.tar"))
    path = mnt .. "/train.tar"
    local before = h.sha256_file(path)
    img = assert(pht.open_image("docker-archive:" .. path, { tmpdir = dir }))
    w = assert(img:writer())
    local s = assert(w:begin_file("/opt/pht_results/big.enc", 2 * 1024 * 1024))
    for _ = 1, 32 do assert(s:write(string.rep("x", 65536))) end
    assert(s:close())
    local ok, msg, code = w:commit("docker-archive:" .. path)
    assert.is_nil(ok)
    assert.are.equal("EIO", code)
    assert.truthy(msg:find("No space left on device", 1, true), msg)
    assert.are.equal(before, h.sha256_file(path))
    assert.are.equal("train.tar\n", h.run("ls -A " .. h.q(mnt)))
    again = assert(pht.open_image("docker-archive:" .. path))
    assert.are.equal("pht-bench/ref-0:latest", (again:manifest():match('"RepoTags":%["([^"]+)"')))
  end)
end)
