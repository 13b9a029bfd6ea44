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
  return h.run("skopeo inspect --config --raw " .. h.q(ref))
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
