-- Hostile images: every layer entry must stay inside the image root and
-- every cap must hold. Each case names the layer and the entry, and leaves
-- the input untouched.
local pht = require "pht"
local h = require "helpers"
local B = dofile(h.fixtures .. "/images/build.lua")

describe("pht.open_image on hostile layers", function()
  local dir
  before_each(function() dir = h.tmpdir() end)

  -- Build a one-layer archive, open it (with opts), return nil, msg, code and
  -- check the archive did not change.
  local function open_hostile(entries, opts, compression)
    local path = B.make { out = dir .. "/hostile.tar", tag = "evil:latest",
      layers = { { compression = compression or "none", entries = entries } } }
    local before = h.sha256_file(path)
    local img, msg, code = pht.open_image("docker-archive:" .. path, opts)
    assert.are.equal(before, h.sha256_file(path))
    return img, msg, code, path
  end

  -- The layer's short digest as messages show it: "sha256:" + 12 hex + "…".
  local function short_layer(path)
    local member = h.run("tar -tf " .. h.q(path) .. " | grep '\\.tar$'"):match("^(%x+)%.tar")
    return "layer sha256:" .. member:sub(1, 12) .. "\226\128\166"
  end

  it("rejects a traversal entry ../etc/passwd", function()
    local img, msg, code, path = open_hostile({ { name = "../etc/passwd", data = "root::0:0" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find(short_layer(path) .. ': entry "../etc/passwd": path leaves the image root', 1, true), msg)
  end)

  it("rejects a traversal hidden inside a path (opt/../../x)", function()
    local img, msg, code = open_hostile({ { name = "opt/", type = "dir" }, { name = "opt/../../x", data = "x" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "opt/../../x": path leaves the image root', 1, true), msg)
  end)

  it("rejects an absolute path", function()
    local img, msg, code = open_hostile({ { name = "/etc/passwd", data = "x" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "/etc/passwd": path is absolute', 1, true), msg)
  end)

  it("rejects a symlink whose target leaves the root", function()
    local img, msg, code = open_hostile({ { name = "opt/", type = "dir" },
      { name = "opt/evil", type = "symlink", link = "../../etc/passwd" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "opt/evil": symlink target leaves the image root', 1, true), msg)
  end)

  it("accepts symlinks that stay inside, absolute ones included", function()
    local img = assert(open_hostile({ { name = "opt/", type = "dir" }, { name = "opt/x", data = "x" },
      { name = "opt/a/b", type = "symlink", link = "../x" },
      { name = "opt/abs", type = "symlink", link = "/opt/x" } }))
    assert.are.equal("../x", img:stat("/opt/a/b").link)
  end)

  it("rejects a hard link out of the root", function()
    local img, msg, code = open_hostile({ { name = "opt/hl", type = "hardlink", link = "../etc/passwd" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "opt/hl": hard link target: path leaves the image root', 1, true), msg)
  end)

  it("rejects a hard link to an entry that is not in the image", function()
    local img, msg, code = open_hostile({ { name = "opt/hl", type = "hardlink", link = "etc/shadow" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "opt/hl": hard link target "etc/shadow" is not in the image', 1, true), msg)
  end)

  it("reads a hard link to an earlier entry of the image", function()
    local img = assert(open_hostile({ { name = "opt/a", data = "shared" },
      { name = "opt/b", type = "hardlink", link = "opt/a" } }))
    assert.are.equal("hardlink", img:stat("/opt/b").type)
    assert.are.equal("shared", img:read_file("/opt/b"))
  end)

  for _, wh in ipairs { ".wh.", ".wh..", ".wh..." } do
    it("rejects a whiteout " .. wh .. " that names its own directory or a parent", function()
      local path = B.make { out = dir .. "/wh.tar", tag = "evil:latest",
        layers = { { entries = { { name = "opt/", type = "dir" }, { name = "opt/x", data = "x" } } },
                   { entries = { { name = "opt/" .. wh, data = "" } } } } }
      local before = h.sha256_file(path)
      local img, msg, code = pht.open_image("docker-archive:" .. path)
      assert.are.equal(before, h.sha256_file(path))
      assert.is_nil(img)
      assert.are.equal("EUNSAFE", code)
      assert.truthy(msg:find('entry "opt/' .. wh .. '": whiteout names its own directory or a parent', 1, true), msg)
    end)
  end

  it("stops a small gzip layer that inflates past the layer cap", function()
    local img, msg, code, path = open_hostile({ { name = "bomb", zeros = 8 * 1024 * 1024 } },
      { max_layer_bytes = 1024 * 1024 }, "gzip")
    assert.is_nil(img)
    assert.truthy(h.run("stat -c %s " .. h.q(path)):match("%d+") + 0 < 100000) -- the archive is small
    assert.are.equal("ELIMIT", code)
    assert.truthy(msg:find(": decompressed size exceeds the cap of 1048576 bytes", 1, true), msg)
    assert.truthy(msg:find("layer sha256:", 1, true), msg)
  end)

  it("stops an entry larger than the entry cap", function()
    local img, msg, code = open_hostile({ { name = "big", zeros = 5000 } }, { max_entry_bytes = 1000 })
    assert.is_nil(img)
    assert.are.equal("ELIMIT", code)
    assert.truthy(msg:find('entry "big": size 5000 exceeds the cap of 1000 bytes', 1, true), msg)
  end)

  it("stops a layer with more entries than the entry cap", function()
    local entries = {}
    for i = 1, 50 do entries[i] = { name = "f" .. i, data = "x" } end
    local img, msg, code = open_hostile(entries, { max_entries = 20 })
    assert.is_nil(img)
    assert.are.equal("ELIMIT", code)
    assert.truthy(msg:find("more than the cap of 20 entries", 1, true), msg)
  end)

  it("stops an entry name longer than the name cap", function()
    local long = string.rep("n", 120)
    local img, msg, code = open_hostile({ { name = long, data = "x" } }, { max_name = 64 })
    assert.is_nil(img)
    assert.are.equal("ELIMIT", code)
    assert.truthy(msg:find("name is longer than the cap", 1, true), msg)
  end)

  it("rejects an OCI index whose digest would leave the blob store", function()
    local path = B.make { format = "oci", out = dir .. "/oci", tag = "v1",
      layers = { { entries = { { name = "x", data = "x" } } } } }
    local index = h.read(path .. "/index.json"):gsub('"sha256:%x+"', '"sha256:../../../etc/passwd"')
    h.write(path .. "/index.json", index)
    local before = h.sha256_file(path .. "/index.json")
    local img, msg, code = pht.open_image("oci:" .. path .. ":v1")
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find("malformed digest", 1, true), msg)
    assert.are.equal(before, h.sha256_file(path .. "/index.json"))
  end)

  -- A docker-archive of one layer with entries whose config declares a diff_id of zeros.
  local function wrong_diff_id(name, entries)
    local path = B.make { out = dir .. "/" .. name .. ".tar", layers = { { entries = entries } } }
    local cfg = h.run("tar -tf " .. h.q(path) .. " | grep '\\.json$' | grep -v manifest"):match("^(%S+)")
    local t = h.tmpdir()
    h.run("cd " .. h.q(t) .. " && tar -xf " .. h.q(path))
    local text = h.read(t .. "/" .. cfg):gsub('"diff_ids": %["sha256:%x+"%]', '"diff_ids": ["sha256:' .. string.rep("0", 64) .. '"]')
    h.write(t .. "/" .. cfg, text)
    h.run("cd " .. h.q(t) .. " && tar -cf " .. h.q(path) .. " *")
    return path
  end

  -- Open path (with opts): the open fails on a diff_id and leaves the file as it was.
  local function rejects_diff_id(path, opts)
    local before = h.sha256_file(path)
    local img, msg, code = pht.open_image("docker-archive:" .. path, opts)
    assert.is_nil(img)
    assert.are.equal("EVERIFY", code)
    assert.truthy(msg:find("does not match its diff_id", 1, true), msg)
    assert.are.equal(before, h.sha256_file(path))
  end

  it("rejects a docker-archive whose layer holding /opt does not match its diff_id", function()
    rejects_diff_id(wrong_diff_id("tampered-opt", { { name = "opt/", type = "dir" }, { name = "opt/x", data = "x" } }))
  end)

  it("rejects, with verify_layers, a docker-archive whose layer outside /opt does not match its diff_id", function()
    rejects_diff_id(wrong_diff_id("tampered", { { name = "x", data = "x" } }), { verify_layers = true })
  end)

  -- verify_behind: the same checks on a thread, their verdict at img:verified()
  -- and before any commit writes.
  it("with verify_behind, opens a docker-archive whose /opt layer does not match its diff_id, "
    .. "and refuses it at verified() and at every commit, writing nothing", function()
    local path = wrong_diff_id("behind-opt", { { name = "opt/", type = "dir" }, { name = "opt/x", data = "x" } })
    local before = h.sha256_file(path)
    local img = assert(pht.open_image("docker-archive:" .. path, { verify_behind = true }))
    -- the bytes can be read meanwhile; they are not known to be the image's
    assert.are.equal("x", img:read_file("/opt/x"))
    local ok, msg, code = img:verified()
    assert.is_nil(ok)
    assert.are.equal("EVERIFY", code)
    assert.truthy(msg:find("does not match its diff_id", 1, true), msg)
    assert.are.same({ nil, msg, code }, { img:verified() }) -- the same verdict again
    local out = dir .. "/behind-out.tar"
    for _, dest in ipairs({ "docker-archive:" .. path, "docker-archive:" .. out, "oci:" .. dir .. "/behind-oci:x" }) do
      local w = assert(img:writer({ dest = dest }))
      assert(w:add_bytes("/opt/y", "y"))
      local cok, cmsg, ccode = w:commit(dest)
      assert.is_nil(cok)
      assert.are.equal("EVERIFY", ccode)
      assert.truthy(cmsg:find("commit " .. dest, 1, true), cmsg)
      assert.truthy(cmsg:find("does not match its diff_id", 1, true), cmsg)
      w:close()
    end
    img:close()
    assert.are.equal(before, h.sha256_file(path))
    assert.is_false(require("pht.fs").exists(out))
    assert.is_false(require("pht.fs").exists(dir .. "/behind-oci"))
  end)

  it("with verify_behind, verifies a good image's /opt layer as the open would", function()
    local path = B.make { out = dir .. "/behind-good.tar", layers = {
      { entries = { { name = "opt/", type = "dir" }, { name = "opt/big", zeros = 3 * 1024 * 1024 } } } } }
    local img = assert(pht.open_image("docker-archive:" .. path, { verify_behind = true }))
    assert.is_true(img:verified())
    assert.is_true(img:layers()[1].verified)
    -- closing before the verdict stops the thread (no wait for it, no leak)
    local img2 = assert(pht.open_image("docker-archive:" .. path, { verify_behind = true }))
    img2:close()
    local img3 = assert(pht.open_image("docker-archive:" .. path))
    assert.is_true(img3:layers()[1].verified)
    assert.is_true(img3:verified())
    img:close()
    img3:close()
  end)

  -- A run's layer (compressed, above the layer holding the train's config) under
  -- verify_behind: the open only decompresses and parses it; its blob digest is
  -- checked beside the steps, its diff_id only by a commit that keeps it.
  local function run_layout(name, run_diff_id)
    return B.make { format = "oci", out = dir .. "/" .. name, tag = "v1", layers = {
      { compression = "gzip", entries = { { name = "opt/", type = "dir" },
        { name = "opt/train_config.json", data = "{}" } } },
      { compression = "gzip", diff_id = run_diff_id, entries = { { name = "opt/pht_results/", type = "dir" },
        { name = "opt/pht_results/out.bin", zeros = 3 * 1024 * 1024 } } } } }
  end

  local function tree_sums(path)
    return h.run("cd " .. h.q(path) .. " && find . -type f | sort | xargs sha256sum")
  end

  it("with verify_behind, reads a run's layer whose diff_id is wrong, commits without it, "
    .. "and refuses a commit that keeps it", function()
    local bad = "sha256:" .. string.rep("0", 64)
    local path = run_layout("run-diff", bad)
    local before = tree_sums(path)
    -- without verify_behind the open checks it, as always
    local img0, msg0, code0 = pht.open_image("oci:" .. path .. ":v1")
    assert.is_nil(img0)
    assert.are.equal("EVERIFY", code0)
    assert.truthy(msg0:find("does not match its diff_id", 1, true), msg0)
    local img = assert(pht.open_image("oci:" .. path .. ":v1", { verify_behind = true }))
    assert.are.equal(3 * 1024 * 1024, #img:read_file("/opt/pht_results/out.bin"))
    assert.is_true(img:verified()) -- its blob is the manifest's
    assert.are.same({ true, false }, { img:layers()[1].verified, img:layers()[2].verified })
    -- a commit that drops it (post-run's) never relies on its diff_id
    local out = dir .. "/run-out"
    local w = assert(img:writer({ keep_layers = 1 }))
    assert(w:add_bytes("/opt/pht_results/enc", "sealed"))
    assert(w:commit("oci:" .. out .. ":v2"))
    w:close()
    local outimg = assert(pht.open_image("oci:" .. out .. ":v2", { verify_layers = true }))
    assert.are.equal(2, #outimg:layers())
    assert.are.equal("sealed", outimg:read_file("/opt/pht_results/enc"))
    assert.is_nil(outimg:stat("/opt/pht_results/out.bin"))
    outimg:close()
    -- a commit that keeps it checks it first and writes nothing
    local kept = dir .. "/run-kept"
    w = assert(img:writer())
    assert(w:add_bytes("/opt/pht_results/enc", "sealed"))
    local ok, msg, code = w:commit("oci:" .. kept .. ":v2")
    assert.is_nil(ok)
    assert.are.equal("EVERIFY", code)
    assert.truthy(msg:find("commit oci:" .. kept, 1, true), msg)
    assert.truthy(msg:find("does not match its diff_id", 1, true), msg)
    w:close()
    img:close()
    assert.is_false(require("pht.fs").exists(kept))
    assert.are.equal(before, tree_sums(path))
  end)

  it("with verify_behind, refuses at verified() and at every commit a run's layer whose blob "
    .. "does not match its digest", function()
    local path = run_layout("run-blob")
    local img = assert(pht.open_image("oci:" .. path .. ":v1"))
    local blob = path .. "/blobs/sha256/" .. img:layers()[2].digest:sub(8)
    img:close()
    -- another gzip of the same tar: the header's MTIME changed, the content and diff_id not
    h.run("printf '\\001' | dd of=" .. h.q(blob) .. " bs=1 seek=4 conv=notrunc status=none")
    local before = tree_sums(path)
    img = assert(pht.open_image("oci:" .. path .. ":v1", { verify_behind = true }))
    assert.are.equal(3 * 1024 * 1024, #img:read_file("/opt/pht_results/out.bin"))
    local ok, msg, code = img:verified()
    assert.is_nil(ok)
    assert.are.equal("EVERIFY", code)
    assert.truthy(msg:find("blob does not match its digest", 1, true), msg)
    for _, keep in ipairs({ 1, 2 }) do
      local dest = dir .. "/run-blob-out-" .. keep
      local w = assert(img:writer({ keep_layers = keep }))
      assert(w:add_bytes("/opt/pht_results/enc", "sealed"))
      local cok, cmsg, ccode = w:commit("oci:" .. dest .. ":v2")
      assert.is_nil(cok)
      assert.are.equal("EVERIFY", ccode)
      assert.truthy(cmsg:find("blob does not match its digest", 1, true), cmsg)
      w:close()
      assert.is_false(require("pht.fs").exists(dest))
    end
    img:close()
    -- opened as before verify_behind, the open itself refuses it
    local img2, msg2, code2 = pht.open_image("oci:" .. path .. ":v1")
    assert.is_nil(img2)
    assert.are.equal("EVERIFY", code2)
    assert.truthy(msg2:find("does not match its digest", 1, true), msg2)
    assert.are.equal(before, tree_sums(path))
  end)

  it("leaves a plain layer outside /opt unhashed by default and says so", function()
    local path = wrong_diff_id("unhashed", { { name = "x", data = "x" } })
    local img = assert(pht.open_image("docker-archive:" .. path))
    local l = img:layers()[1]
    assert.is_false(l.verified)
    assert.are.equal("sha256:" .. string.rep("0", 64), l.diff_id)
    assert.are.equal(l.diff_id, l.digest)
    assert.are.equal("x", img:read_file("/x"))
  end)

  it("checks every header of a layer it does not hash (a traversal after a large file)", function()
    local img, msg, code = open_hostile({ { name = "srv/big", zeros = 3 * 1024 * 1024 },
      { name = "srv/../../etc/passwd", data = "root::0:0" } })
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('entry "srv/../../etc/passwd": path leaves the image root', 1, true), msg)
  end)

  it("hashes the lower layer an /opt hard link takes its bytes from", function()
    local path = B.make { out = dir .. "/hardlink.tar", layers = {
      { entries = { { name = "usr/", type = "dir" }, { name = "usr/data", data = "original bytes" } } },
      { entries = { { name = "opt/", type = "dir" }, { name = "opt/link", type = "hardlink", link = "usr/data" } } },
    } }
    h.replace_bytes(path, "original bytes", "tampered bytes")
    rejects_diff_id(path)
  end)

  it("hashes an upper layer that only deletes /opt content (a whiteout)", function()
    local path = B.make { out = dir .. "/whiteout.tar", layers = {
      { entries = { { name = "opt/", type = "dir" }, { name = "opt/pht_results/", type = "dir" },
        { name = "opt/pht_results/r.txt", data = "result" } } },
      { entries = { { name = "srv/", type = "dir" }, { name = "srv/pad", data = "padding bytes" },
        { name = "opt/.wh.pht_results" } } },
    } }
    h.replace_bytes(path, "padding bytes", "changed bytes")
    rejects_diff_id(path)
  end)

  -- Rewrite a one-layer docker-archive with edit(dir) applied to its members;
  -- open it and return nil, msg, code after checking the file did not change.
  local function open_edited(name, edit)
    local path = B.make { out = dir .. "/" .. name .. ".tar", tag = "x:latest",
      layers = { { entries = { { name = "x", data = "x" } } } } }
    local t = h.tmpdir()
    h.run("cd " .. h.q(t) .. " && tar -xf " .. h.q(path))
    edit(t, h.read(t .. "/manifest.json"):match('"Layers":%s*%["([^"]*)"'))
    h.run("cd " .. h.q(t) .. " && tar -cf " .. h.q(path) .. " *")
    local before = h.sha256_file(path)
    local img, msg, code = pht.open_image("docker-archive:" .. path)
    assert.are.equal(before, h.sha256_file(path))
    return img, msg, code
  end

  it("rejects a docker-archive whose manifest.json is malformed JSON", function()
    local img, msg, code = open_edited("badjson", function(t) h.write(t .. "/manifest.json", "[{") end)
    assert.is_nil(img)
    assert.are.equal("EFORMAT", code)
    assert.truthy(msg:find("manifest.json: malformed JSON", 1, true), msg)
  end)

  it("rejects a docker-archive whose manifest names a layer above the archive root", function()
    local img, msg, code = open_edited("travlayer", function(t)
      h.write(t .. "/manifest.json", h.read(t .. "/manifest.json"):gsub('"Layers":%s*%["', '"Layers": ["../../'))
    end)
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find('member "../../', 1, true), msg)
    assert.truthy(msg:find("path leaves the image root", 1, true), msg)
  end)

  it("rejects a docker-archive whose layer member is a symlink out of the archive", function()
    local img, msg, code = open_edited("symesc", function(t, layer)
      os.remove(t .. "/" .. layer)
      h.run("ln -s ../../etc/passwd " .. h.q(t .. "/" .. layer))
    end)
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.truthy(msg:find("leaves the archive", 1, true), msg)
  end)
end)

describe("pht.open_image on a FIFO", function()
  -- Run in a child with a time limit: an open that blocks on the FIFO would
  -- otherwise hang the suite instead of failing this case.
  local function open_in_child(ref)
    local lua = jit and "luajit" or "lua5.4"
    local chunk = "package.cpath = " .. string.format("%q", package.cpath)
      .. "; local pht = require 'pht'; local img, msg, code = pht.open_image(" .. string.format("%q", ref)
      .. "); io.write(tostring(code), ' ', tostring(msg))"
    return h.sh("timeout 20 " .. lua .. " -e " .. h.q(chunk))
  end

  it("given as a docker-archive path is refused as not a regular file, without blocking", function()
    local fifo = h.tmpdir() .. "/train.tar"
    h.run("mkfifo " .. h.q(fifo))
    local ok, out = open_in_child("docker-archive:" .. fifo)
    assert.is_true(ok, out)
    assert.matches("^EFORMAT .*not a regular file", out)
  end)
end)
