-- Commits into the source's own archive or layout: where the names go
-- (as skopeo, docker load and the archive's own manifest.json / index.json
-- show) and which blobs stay behind.
local pht = require "pht"
local h = require "helpers"
local support = require "support"

local function have(tool)
  return h.sh("command -v " .. tool .. " >/dev/null")
end

local function copy_fixture(name, dir)
  local to = dir .. "/" .. name
  h.run("cp " .. h.q(h.vectors .. "/" .. name) .. " " .. h.q(to))
  return to
end

-- manifest.json of a docker-archive as tar reads it, decoded.
local function archive_manifest(path)
  return assert(pht.json_decode(h.run("tar -xOf " .. h.q(path) .. " manifest.json")))
end

-- RepoTags of the manifest.json entry whose Config is the image's config digest.
local function tags_of_config(path, config_text)
  local want = h.run("printf %s " .. h.q(config_text) .. " | sha256sum"):match("^(%x+)")
  for _, e in ipairs(archive_manifest(path)) do
    if e.Config:find(want, 1, true) then return e.RepoTags end
  end
  return nil
end

-- Add /opt/marker = text on top of ref and commit to dest.
local function commit_marker(ref, dest, text, opts)
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer())
  assert(w:add_bytes("/opt/marker", text))
  assert(w:commit(dest, opts))
  img:close()
end

local function config_of(ref)
  return assert(pht.open_image(ref)):image_config()
end

-- The config blob skopeo finds for ref, byte for byte.
local function skopeo_config(ref)
  return h.stdout("skopeo inspect --config --raw " .. h.q(ref))
end

describe("committing into the source's own docker-archive", function()
  local dir, path
  before_each(function()
    dir = h.tmpdir()
    path = copy_fixture("stage0-built.tar", dir)
    -- the train tagged repo/train:latest and :v2, beside another image other/keep:v1
    local src = "docker-archive:" .. path .. ":pht-bench/ref-0:latest"
    commit_marker(src, "docker-archive:" .. path .. ":repo/train:latest", "one",
      { tags = { "repo/train:v2" } })
    commit_marker(src, "docker-archive:" .. path .. ":other/keep:v1", "kept")
    assert.are.same({ "pht-bench/ref-0:latest" },
      tags_of_config(path, config_of("docker-archive:" .. path .. ":pht-bench/ref-0:latest")))
  end)

  it("moves the source's RepoTags to the new image without NAME:TAG, as docker tag would", function()
    commit_marker("docker-archive:" .. path .. ":repo/train:v2", "docker-archive:" .. path, "two")
    local new = config_of("docker-archive:" .. path .. ":repo/train:latest")
    assert.are.same({ "repo/train:latest", "repo/train:v2" }, tags_of_config(path, new))
    assert.are.equal(3, #archive_manifest(path)) -- the old image went with its tags
    assert.are.equal("two", assert(pht.open_image("docker-archive:" .. path .. ":repo/train:v2")):read_file("/opt/marker"))
    assert.are.equal("kept", assert(pht.open_image("docker-archive:" .. path .. ":other/keep:v1")):read_file("/opt/marker"))
    if not have("skopeo") then return end
    for _, t in ipairs({ "repo/train:latest", "repo/train:v2" }) do
      assert.are.equal(new, skopeo_config("docker-archive:" .. path .. ":" .. t))
    end
  end)

  it("gives each tag once when the caller also passes the source's RepoTags", function()
    commit_marker("docker-archive:" .. path .. ":repo/train:latest", "docker-archive:" .. path, "two",
      { tags = { "repo/train:latest", "repo/train:v2", "repo/train:v3" } })
    local new = config_of("docker-archive:" .. path .. ":repo/train:v3")
    assert.are.same({ "repo/train:latest", "repo/train:v2", "repo/train:v3" }, tags_of_config(path, new))
  end)

  it("replaces an untagged source instead of adding a second image", function()
    local out = dir .. "/untagged.tar"
    commit_marker("docker-archive:" .. path .. ":repo/train:latest", "docker-archive:" .. out, "one")
    commit_marker("docker-archive:" .. out, "docker-archive:" .. out, "two")
    local m = archive_manifest(out)
    assert.are.equal(1, #m)
    assert.are.same({}, m[1].RepoTags)
    assert.are.equal("two", assert(pht.open_image("docker-archive:" .. out)):read_file("/opt/marker"))
  end)

  it("keeps the archive's other tags on a commit to PATH:NAME:TAG", function()
    local base = config_of("docker-archive:" .. path .. ":other/keep:v1")
    commit_marker("docker-archive:" .. path .. ":repo/train:latest", "docker-archive:" .. path .. ":repo/train:latest", "two")
    local new = config_of("docker-archive:" .. path .. ":repo/train:latest")
    assert.are.same({ "repo/train:latest" }, tags_of_config(path, new))
    assert.are.same({ "repo/train:v2" }, tags_of_config(path, config_of("docker-archive:" .. path .. ":repo/train:v2")))
    assert.are.same({ "other/keep:v1" }, tags_of_config(path, base))
    assert.are.same({ "pht-bench/ref-0:latest" }, tags_of_config(path, config_of("docker-archive:" .. path .. ":pht-bench/ref-0:latest")))
    assert.are.equal("one", assert(pht.open_image("docker-archive:" .. path .. ":repo/train:v2")):read_file("/opt/marker"))
    if not have("skopeo") then return end
    assert.are.equal(base, skopeo_config("docker-archive:" .. path .. ":other/keep:v1"))
  end)

  it("leaves the source's tags alone on an untagged commit to another archive", function()
    local before = h.sha256_file(path)
    local out = dir .. "/other.tar"
    commit_marker("docker-archive:" .. path .. ":repo/train:latest", "docker-archive:" .. out, "two")
    assert.are.equal(before, h.sha256_file(path))
    assert.are.same({}, archive_manifest(out)[1].RepoTags)
  end)

  it("docker load puts the moved tags on the new image", function()
    local ok, why = support.docker_available()
    if not ok then return pending(why) end
    local name = support.unique_name("move")
    local out = dir .. "/load.tar" -- holds only the two names, so the spec can unload all it loads
    commit_marker("docker-archive:" .. path .. ":repo/train:latest", "docker-archive:" .. out .. ":" .. name .. ":a", "x",
      { tags = { name .. ":b" } })
    commit_marker("docker-archive:" .. out .. ":" .. name .. ":a", "docker-archive:" .. out, "y")
    assert.are.equal(1, #archive_manifest(out))
    finally(function() support.docker("rmi -f " .. h.q(name .. ":a") .. " " .. h.q(name .. ":b")) end)
    local loaded, msg = support.docker("load --input " .. h.q(out))
    assert.is_true(loaded, msg)
    local new = config_of("docker-archive:" .. out .. ":" .. name .. ":b")
    local id = "sha256:" .. h.run("printf %s " .. h.q(new) .. " | sha256sum"):match("^(%x+)")
    for _, t in ipairs({ name .. ":a", name .. ":b" }) do
      local got
      ok, got = support.docker("image inspect --format '{{.Id}}' " .. h.q(t))
      assert.is_true(ok, got)
      assert.are.equal(id, got:match("%S+"))
    end
  end)
end)

describe("committing into the source's own OCI layout", function()
  local dir, layout
  before_each(function()
    dir = h.tmpdir()
    layout = dir .. "/layout"
    local src = "docker-archive:" .. h.vectors .. "/stage0-built.tar"
    commit_marker(src, "oci:" .. layout .. ":one", "one")
    commit_marker(src, "oci:" .. layout .. ":two", "two")
  end)

  local function names()
    local out = {}
    for _, d in ipairs(assert(pht.json_decode(h.read(layout .. "/index.json"))).manifests) do
      out[#out + 1] = d.annotations and d.annotations["org.opencontainers.image.ref.name"] or "-"
    end
    table.sort(out)
    return out
  end

  it("moves the source's ref name to the new manifest without a TAG", function()
    local old = config_of("oci:" .. layout .. ":one")
    commit_marker("oci:" .. layout .. ":one", "oci:" .. layout, "one-b")
    assert.are.same({ "one", "two" }, names())
    local new = config_of("oci:" .. layout .. ":one")
    assert.are_not.equal(old, new)
    assert.are.equal("one-b", assert(pht.open_image("oci:" .. layout .. ":one")):read_file("/opt/marker"))
    assert.are.equal("two", assert(pht.open_image("oci:" .. layout .. ":two")):read_file("/opt/marker"))
    if not have("skopeo") then return end
    assert.are.equal(new, skopeo_config("oci:" .. layout .. ":one"))
  end)

  it("replaces a nameless only image instead of adding a second one", function()
    local bare = dir .. "/bare"
    commit_marker("oci:" .. layout .. ":one", "oci:" .. bare, "x")
    commit_marker("oci:" .. bare, "oci:" .. bare, "y")
    local ix = assert(pht.json_decode(h.read(bare .. "/index.json")))
    assert.are.equal(1, #ix.manifests)
    assert.are.equal("y", assert(pht.open_image("oci:" .. bare)):read_file("/opt/marker"))
  end)
end)

-- The paths under dir whose content holds marker (grep -r: every file, every byte).
local function files_holding(dir, marker)
  local ok, out = h.sh("grep -r -l -F -- " .. h.q(marker) .. " " .. h.q(dir))
  if not ok then
    assert.are.equal("", out) -- grep's "no match", not an error
    return {}
  end
  local files = {}
  for f in out:gmatch("[^\n]+") do files[#files + 1] = f end
  return files
end

-- Every file of a tree with its sha256, one line each, sorted.
local function snapshot(dir)
  return h.run("cd " .. h.q(dir) .. " && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum")
end

local MARKER = "PHT-PLAINTEXT-MARKER-7f3a9c"

-- Write /opt/pht_train/secret.txt holding the marker as a new layer of ref, to dest.
local function write_secret(ref, dest)
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer())
  assert(w:add_dir("/opt/pht_train"))
  assert(w:add_bytes("/opt/pht_train/secret.txt", "decrypted: " .. MARKER .. "\n"))
  assert(w:commit(dest, { history = "pht pre-run" }))
end

-- On the first `keep` layers of ref (below the secret), a new layer with ciphertext.
local function commit_below(ref, keep, dest, opts)
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer { keep_layers = keep })
  assert(w:add_dir("/opt/pht_train"))
  assert(w:add_bytes("/opt/pht_train/secret.txt", "ciphertext\n"))
  return w:commit(dest, opts)
end

describe("unreferenced blobs after a commit into an OCI layout", function()
  local dir, layout, ref
  before_each(function()
    dir = h.tmpdir()
    layout = dir .. "/layout"
    h.run("cp -a " .. h.q(assert(support.base_image_oci())) .. " " .. h.q(layout))
    ref = "oci:" .. layout .. ":latest"
    write_secret(ref, ref)
    assert.are_not.same({}, files_holding(layout, MARKER))
  end)

  it("are removed: no file of the layout holds the dropped layer's plaintext", function()
    assert(commit_below(ref, 1, ref, { history = "pht post-run" }))
    assert.are.same({}, files_holding(layout, MARKER))
    local img = assert(pht.open_image(ref))
    assert.are.equal("ciphertext\n", img:read_file("/opt/pht_train/secret.txt"))
    -- every blob left is one the manifest names
    local man = assert(pht.json_decode(img:manifest()))
    local want = { [man.config.digest:sub(8)] = true }
    for _, l in ipairs(man.layers) do want[l.digest:sub(8)] = true end
    local ix = assert(pht.json_decode(h.read(layout .. "/index.json")))
    assert.are.equal(1, #ix.manifests)
    want[ix.manifests[1].digest:sub(8)] = true
    local have_blobs = {}
    for f in h.run("ls " .. h.q(layout .. "/blobs/sha256")):gmatch("%S+") do have_blobs[f] = true end
    assert.are.same(want, have_blobs)
  end)

  it("leave a layout that skopeo inspect and umoci unpack accept", function()
    assert(commit_below(ref, 1, ref))
    if have("skopeo") then
      local out = h.stdout("skopeo inspect " .. h.q(ref))
      for _, l in ipairs(assert(pht.open_image(ref)):layers()) do
        assert.truthy(out:find(l.digest, 1, true), out)
      end
    end
    if not have("umoci") then return pending("umoci is not installed (apt-get install umoci)") end
    if not h.run("id -u"):match("^0") then return pending("umoci unpack without --rootless needs root") end
    h.run("umoci unpack --image " .. h.q(layout .. ":latest") .. " " .. h.q(dir .. "/bundle"))
    assert.are.equal("ciphertext\n", h.read(dir .. "/bundle/rootfs/opt/pht_train/secret.txt"))
    assert.truthy(h.sh("test -x " .. h.q(dir .. "/bundle/rootfs/bin/busybox")))
  end)

  it("stay when another name still references them", function()
    assert(assert(pht.open_image(ref)):retag("oci:" .. layout .. ":pre-run"))
    assert(commit_below(ref, 1, ref))
    assert.are.equal(1, #files_holding(layout, MARKER))
    assert.truthy(assert(pht.open_image("oci:" .. layout .. ":pre-run")):read_file("/opt/pht_train/secret.txt"):find(MARKER, 1, true))
  end)

  it("stay with keep_unreferenced = true", function()
    assert(commit_below(ref, 1, ref, { keep_unreferenced = true }))
    assert.are.equal(1, #files_holding(layout, MARKER))
    assert.are.equal("ciphertext\n", assert(pht.open_image(ref)):read_file("/opt/pht_train/secret.txt"))
  end)

  it("are not touched when the commit fails before index.json is replaced", function()
    h.write(layout .. "/index.json", "{ not json") -- write_index fails after the blobs went in
    local before = snapshot(layout)
    local base = "docker-archive:" .. assert(support.base_image())
    local ok, msg, code = commit_below(base, 1, ref)
    assert.is_nil(ok)
    assert.are.equal("EFORMAT", code)
    assert.truthy(msg:find("index.json", 1, true), msg)
    assert.are.equal(before, snapshot(layout))
  end)

  it("are only left over when the collection fails after the commit", function()
    -- a second name whose manifest blob is missing: what it references is unknown
    local ix = assert(pht.json_decode(h.read(layout .. "/index.json")))
    ix.manifests[2] = { mediaType = "application/vnd.oci.image.manifest.v1+json", size = 2,
      digest = "sha256:" .. string.rep("0", 64), annotations = { ["org.opencontainers.image.ref.name"] = "gone" } }
    h.write(layout .. "/index.json", assert(pht.json_encode(ix)))
    local ok, msg, code = commit_below(ref, 1, ref)
    assert.is_nil(ok)
    assert.are.equal("ENOTFOUND", code)
    assert.truthy(msg:find("the image is committed, but removing unreferenced blobs failed", 1, true), msg)
    assert.are.equal("ciphertext\n", assert(pht.open_image(ref)):read_file("/opt/pht_train/secret.txt"))
    assert.are.equal(1, #files_holding(layout, MARKER)) -- nothing was removed
    if have("skopeo") then h.stdout("skopeo inspect " .. h.q(ref)) end
  end)
end)

describe("layers after an in-place commit into a docker-archive", function()
  local dir, path, tag

  -- Every member of the archive, extracted, scanned for the marker.
  local function members_holding(marker)
    local x = h.tmpdir()
    h.run("tar -xf " .. h.q(path) .. " -C " .. h.q(x))
    return files_holding(x, marker)
  end

  before_each(function()
    dir = h.tmpdir()
    local base
    base, tag = support.base_image()
    assert(base, tag)
    path = dir .. "/train.tar"
    h.run("cp " .. h.q(base) .. " " .. h.q(path))
    write_secret("docker-archive:" .. path .. ":" .. tag, "docker-archive:" .. path .. ":" .. tag)
    assert.are.equal(1, #members_holding(MARKER))
  end)

  it("are only those a manifest.json entry references (tagged commit)", function()
    assert(commit_below("docker-archive:" .. path .. ":" .. tag, 1, "docker-archive:" .. path .. ":" .. tag))
    assert.are.same({}, members_holding(MARKER))
    local m = archive_manifest(path)
    assert.are.equal(1, #m)
    local members = {}
    for f in h.run("tar -tf " .. h.q(path)):gmatch("[^\n]+") do members[f] = true end
    local want = { ["manifest.json"] = true, [m[1].Config] = true }
    for _, l in ipairs(m[1].Layers) do want[l] = true end
    assert.are.same(want, members)
    if have("skopeo") then h.stdout("skopeo inspect " .. h.q("docker-archive:" .. path .. ":" .. tag)) end
  end)

  it("are only those a manifest.json entry references (untagged commit in place)", function()
    assert(commit_below("docker-archive:" .. path, 1, "docker-archive:" .. path))
    assert.are.same({}, members_holding(MARKER))
    local m = archive_manifest(path)
    assert.are.equal(1, #m)
    assert.are.same({ tag }, m[1].RepoTags)
    assert.are.equal("ciphertext\n", assert(pht.open_image("docker-archive:" .. path .. ":" .. tag)):read_file("/opt/pht_train/secret.txt"))
  end)
end)
