-- Images written by libpht, checked by the real tools: skopeo (inspect,
-- copy between docker-archive and oci), umoci (unpack) and docker (load,
-- create, cp). A missing tool or daemon marks its case pending with the
-- reason; CI installs skopeo and umoci and starts dockerd.
local pht = require "pht"
local h = require "helpers"

local function have(tool)
  return h.sh("command -v " .. tool .. " >/dev/null")
end

-- A train written by libpht: the stage-1 image rebased on its first two
-- layers plus a new results layer, as docker-archive repo/train:latest.
local function write_train(dir)
  local img = assert(pht.open_image("docker-archive:" .. h.vectors .. "/stage1-station_1-post.tar"))
  local w = assert(img:writer { keep_layers = 2 })
  assert(w:add_dir("/opt/pht_results", { opaque = true }))
  assert(w:add_dir("/opt/pht_results/a"))
  assert(w:add_bytes("/opt/pht_results/a/b.txt", "written by libpht\n"))
  assert(w:add_bytes("/opt/pht_results/count.txt", "42\n", { mode = tonumber("640", 8), uid = 1000, gid = 1000 }))
  local s = assert(w:begin_file("/opt/pht_results/blob.enc", 300000))
  for i = 1, 3 do assert(s:write(string.rep(string.char(64 + i), 100000))) end
  assert(s:close())
  assert(w:whiteout("/opt/user_sym_key.key"))
  local path = dir .. "/train.tar"
  assert(w:commit("docker-archive:" .. path .. ":repo/train:latest", { history = "pht post-run" }))
  return path
end

-- What libpht reads under /opt/pht_results: {rel = content}.
local function results_of(ref)
  local img = assert(pht.open_image(ref))
  local out = {}
  for _, e in ipairs(assert(img:walk("/opt/pht_results"))) do
    if e.type == "file" then out[e.path] = assert(img:read_file("/opt/pht_results/" .. e.path)) end
  end
  return out
end

-- The same from a directory on disk.
local function results_on_disk(root)
  local out = {}
  for rel in h.run("cd " .. h.q(root) .. " && find . -type f | sed 's|^\\./||'"):gmatch("[^\n]+") do
    out[rel] = h.read(root .. "/" .. rel)
  end
  return out
end

describe("libpht images and skopeo", function()
  local dir
  before_each(function()
    if not have("skopeo") then pending("skopeo is not installed (apt-get install skopeo)") end
    dir = h.tmpdir()
  end)

  it("skopeo inspect accepts a written docker-archive and lists its layers", function()
    if not have("skopeo") then return end
    local path = write_train(dir)
    local img = assert(pht.open_image("docker-archive:" .. path))
    local out = h.stdout("skopeo inspect docker-archive:" .. h.q(path) .. ":repo/train:latest")
    for _, l in ipairs(img:layers()) do assert.truthy(out:find(l.digest, 1, true), out) end
    assert.truthy(out:find('"Architecture": "amd64"', 1, true), out)
    local cfg = h.stdout("skopeo inspect --config docker-archive:" .. h.q(path))
    assert.truthy(cfg:find("pht post-run", 1, true), cfg)
  end)

  it("skopeo copies docker-archive -> oci -> docker-archive and libpht reads every copy", function()
    if not have("skopeo") then return end
    local path = write_train(dir)
    local want = results_of("docker-archive:" .. path)
    h.run("skopeo copy --quiet docker-archive:" .. h.q(path) .. " oci:" .. h.q(dir .. "/layout") .. ":t1")
    assert.are.same(want, results_of("oci:" .. dir .. "/layout:t1"))
    h.run("skopeo copy --quiet oci:" .. h.q(dir .. "/layout") .. ":t1 docker-archive:" .. h.q(dir .. "/back.tar") .. ":repo/back:v1")
    assert.are.same(want, results_of("docker-archive:" .. dir .. "/back.tar:repo/back:v1"))
  end)

  it("skopeo accepts a written OCI layout, and libpht reads skopeo's zstd and gzip layers", function()
    if not have("skopeo") then return end
    local path = write_train(dir)
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert(img:retag("oci:" .. dir .. "/mine:v1"))
    local out = h.stdout("skopeo inspect oci:" .. h.q(dir .. "/mine") .. ":v1")
    for _, l in ipairs(img:layers()) do assert.truthy(out:find(l.digest, 1, true), out) end
    local want = results_of("docker-archive:" .. path)
    for _, fmt in ipairs({ "gzip", "zstd" }) do
      h.run("skopeo copy --quiet --dest-compress-format " .. fmt .. " oci:" .. h.q(dir .. "/mine") .. ":v1 oci:"
        .. h.q(dir .. "/" .. fmt) .. ":v1")
      local copy = assert(pht.open_image("oci:" .. dir .. "/" .. fmt .. ":v1"))
      assert.truthy(copy:layers()[3].media_type:find("+" .. fmt, 1, true), copy:layers()[3].media_type)
      assert.are.same(want, results_of("oci:" .. dir .. "/" .. fmt .. ":v1"))
    end
  end)
end)

describe("libpht images and umoci", function()
  it("umoci unpacks a written OCI layout and the files match", function()
    if not have("umoci") then pending("umoci is not installed (apt-get install umoci)") return end
    if not h.run("id -u"):match("^0") then pending("umoci unpack without --rootless needs root") return end
    local dir = h.tmpdir()
    local path = write_train(dir)
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert(img:retag("oci:" .. dir .. "/layout:latest"))
    h.run("umoci unpack --image " .. h.q(dir .. "/layout") .. ":latest " .. h.q(dir .. "/bundle"))
    local rootfs = dir .. "/bundle/rootfs"
    assert.are.same(results_of("docker-archive:" .. path), results_on_disk(rootfs .. "/opt/pht_results"))
    assert.is_nil(io.open(rootfs .. "/opt/user_sym_key.key")) -- whiteout applied
    assert.are.equal(img:read_file("/opt/train_config.json"), h.read(rootfs .. "/opt/train_config.json"))
    assert.are.equal("640 1000:1000", h.run("stat -c '%a %u:%g' " .. h.q(rootfs .. "/opt/pht_results/count.txt")):match("^(.-)\n"))
  end)
end)

describe("libpht images and docker", function()
  it("docker loads a written archive and a container created from it shows the files", function()
    if not have("docker") then pending("docker is not installed") return end
    local up, info = h.sh("docker info")
    if not up then pending("no Docker daemon answers `docker info`: " .. (info:match("([^\n]+)%s*$") or "")) return end
    local dir = h.tmpdir()
    local path = write_train(dir)
    local tag = "pht-spec/image-tools:" .. tostring(os.time())
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert(img:retag("docker-archive:" .. path .. ":" .. tag))
    local loaded = h.stdout("docker load -i " .. h.q(path))
    assert.truthy(loaded:find(tag, 1, true), loaded)
    -- The id from stdout alone: a daemon without IPv4 forwarding warns on
    -- stderr about the default network this container is created on.
    local ok, out, err = h.sh_split("docker create " .. h.q(tag))
    local cid = out:match("^(%x+)\n$")
    finally(function()
      if cid then h.sh("docker rm -f " .. cid) end
      h.sh("docker rmi -f " .. h.q(tag) .. " repo/train:latest")
    end)
    assert(ok and cid, "docker create printed no container id on stdout: " .. out .. err)
    h.run("docker cp " .. cid .. ":/opt/pht_results " .. h.q(dir .. "/fromdocker"))
    assert.are.same(results_of("docker-archive:" .. path .. ":" .. tag), results_on_disk(dir .. "/fromdocker"))
    local gone = h.sh("docker cp " .. cid .. ":/opt/user_sym_key.key " .. h.q(dir .. "/key"))
    assert.is_false(gone)
  end)
end)
