-- The runtime config a writer sets (image_writer:set_config): Cmd,
-- Entrypoint, Env, WorkingDir, Labels and User, checked by skopeo inspect
-- --config, umoci's runtime spec and a real docker run of a train built on
-- the busybox base image.
local pht = require "pht"
local h = require "helpers"
local support = require "support"

local function have(tool)
  return h.sh("command -v " .. tool .. " >/dev/null")
end

-- The busybox base image's reference (shared: only read, never written).
local function base()
  local path, why = support.base_image()
  assert(path, why)
  return "docker-archive:" .. path
end

-- The image config as skopeo reads it.
local function skopeo_config(ref)
  return assert(pht.json_decode(h.stdout("skopeo inspect --config " .. h.q(ref))))
end

-- The image config as libpht reads it.
local function config_of(ref)
  return assert(pht.json_decode(assert(pht.open_image(ref)):image_config()))
end

-- A train on the busybox base: one new layer holding /opt/pht_train/entrypoint.sh.
local function train_writer(spec)
  local ref = base()
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer())
  assert(w:add_dir("/opt/pht_train"))
  assert(w:add_bytes("/opt/pht_train/entrypoint.sh",
    'echo from-entrypoint "$GREETING" "$(pwd)" "$(id -u)"\n', { mode = tonumber("755", 8) }))
  if spec then assert(w:set_config(spec)) end
  return w, img
end

describe("image_writer:set_config", function()
  local dir
  before_each(function() dir = h.tmpdir() end)

  it("writes Cmd, Entrypoint, Env, WorkingDir, Labels and User, as skopeo inspect --config shows", function()
    if not have("skopeo") then return pending("skopeo is not installed (apt-get install skopeo)") end
    local w, img = train_writer {
      cmd = { "/bin/sh", "/opt/pht_train/entrypoint.sh" },
      entrypoint = { "/bin/env", "-u", "HOME" },
      env = { "GREETING=hello", PHT_STATION = "station_1" },
      working_dir = "/opt/pht_train",
      labels = { ["org.example.train"] = "t-1", ["org.example.empty"] = "" },
      user = "65534:65534",
    }
    local out = "docker-archive:" .. dir .. "/train.tar:pht/train:latest"
    assert(w:commit(out, { history = "pht build" }))
    local cfg = skopeo_config(out)
    local run = cfg.config
    assert.are.same({ "/bin/sh", "/opt/pht_train/entrypoint.sh" }, run.Cmd)
    assert.are.same({ "/bin/env", "-u", "HOME" }, run.Entrypoint)
    -- the base's PATH stays; the array item first, then named ones
    assert.are.same({ "PATH=/bin", "GREETING=hello", "PHT_STATION=station_1" }, run.Env)
    assert.are.equal("/opt/pht_train", run.WorkingDir)
    assert.are.same({ ["org.example.train"] = "t-1", ["org.example.empty"] = "" }, run.Labels)
    assert.are.equal("65534:65534", run.User)
    -- everything else is the base's, with rootfs and history for the new layer
    local before = assert(pht.json_decode(img:image_config()))
    assert.are.equal(before.architecture, cfg.architecture)
    assert.are.equal(before.os, cfg.os)
    assert.are.equal(#before.rootfs.diff_ids + 1, #cfg.rootfs.diff_ids)
    assert.are.equal(before.rootfs.diff_ids[1], cfg.rootfs.diff_ids[1])
    assert.are.equal(before.history[1].created_by, cfg.history[1].created_by)
    assert.are.equal("pht build", cfg.history[#cfg.history].created_by)
  end)

  it("changes only what it names; later calls apply on top, false removes", function()
    local img = assert(pht.open_image(base()))
    local w = assert(img:writer())
    assert(w:set_config { entrypoint = { "/bin/true" }, env = { A = "1", B = "2" }, labels = { x = "1", y = "2" } })
    assert(w:set_config { entrypoint = false, env = { A = false, PATH = "/usr/bin:/bin" }, labels = { x = false } })
    local out = "oci:" .. dir .. "/layout:v1"
    assert(w:commit(out))
    local before = assert(pht.json_decode(img:image_config())).config
    local cfg = config_of(out)
    local run = cfg.config
    assert.is_nil(run.Entrypoint)
    assert.are.same({ "PATH=/usr/bin:/bin", "B=2" }, run.Env) -- PATH replaced in its place
    assert.are.same({ y = "2" }, run.Labels)
    assert.are.same(before.Cmd, run.Cmd)
    assert.are.equal(before.WorkingDir, run.WorkingDir)
    -- no new entries: same layers, and the change is an empty_layer history entry
    assert.are.equal(#img:layers(), #assert(pht.open_image(out)):layers())
    assert.is_true(cfg.history[#cfg.history].empty_layer)
  end)

  it("umoci unpack turns the config into the bundle's process", function()
    if not have("umoci") then return pending("umoci is not installed (apt-get install umoci)") end
    if not h.run("id -u"):match("^0") then return pending("umoci unpack without --rootless needs root") end
    local w = train_writer {
      entrypoint = { "/bin/sh" }, cmd = { "/opt/pht_train/entrypoint.sh" },
      env = { GREETING = "hi" }, working_dir = "/opt/pht_train", user = "65534:65534",
    }
    assert(w:commit("oci:" .. dir .. "/layout:train"))
    h.run("umoci unpack --image " .. h.q(dir .. "/layout") .. ":train " .. h.q(dir .. "/bundle"))
    local spec = assert(pht.json_decode(h.read(dir .. "/bundle/config.json")))
    assert.are.same({ "/bin/sh", "/opt/pht_train/entrypoint.sh" }, spec.process.args)
    assert.are.equal("/opt/pht_train", spec.process.cwd)
    assert.are.same({ 65534, 65534 }, { spec.process.user.uid, spec.process.user.gid })
    local env = table.concat(spec.process.env, "\n")
    assert.truthy(env:find("GREETING=hi", 1, true), env)
    assert.truthy(env:find("PATH=/bin", 1, true), env)
  end)

  it("docker run of a train built on the busybox base runs its Cmd", function()
    local ok, why = support.docker_available()
    if not ok then return pending(why) end
    local w = train_writer { cmd = { "/bin/sh", "-c", "echo from-cmd" } }
    local tag = support.unique_name("cfg") .. ":latest"
    local path = dir .. "/train.tar"
    assert(w:commit("docker-archive:" .. path .. ":" .. tag))
    finally(function() support.docker("rmi -f " .. h.q(tag)) end)
    local loaded, out = support.docker("load --input " .. h.q(path))
    assert.is_true(loaded, out)
    local ran
    ran, out = support.docker("run --rm --network none " .. h.q(tag))
    assert.is_true(ran, out)
    assert.are.equal("from-cmd\n", out)
  end)

  it("docker run honours Entrypoint, Env, WorkingDir and User", function()
    local ok, why = support.docker_available()
    if not ok then return pending(why) end
    local w = train_writer {
      entrypoint = { "/bin/sh" }, cmd = { "/opt/pht_train/entrypoint.sh" },
      env = { GREETING = "hi" }, working_dir = "/opt/pht_train", user = "65534",
    }
    local tag = support.unique_name("cfg") .. ":latest"
    local path = dir .. "/train.tar"
    assert(w:commit("docker-archive:" .. path .. ":" .. tag))
    finally(function() support.docker("rmi -f " .. h.q(tag)) end)
    local loaded, out = support.docker("load --input " .. h.q(path))
    assert.is_true(loaded, out)
    local ran
    ran, out = support.docker("run --rm --network none " .. h.q(tag))
    assert.is_true(ran, out)
    assert.are.equal("from-entrypoint hi /opt/pht_train 65534\n", out)
  end)

  -- Each bad spec: nil, message, "EINVAL", and the committed config shows no trace of it.
  local function rejected(spec, why)
    local img = assert(pht.open_image(base()))
    local w = assert(img:writer())
    local ok, msg, code = w:set_config(spec)
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.truthy(msg:find(why, 1, true), msg)
    local out = "docker-archive:" .. dir .. "/out.tar:x/y:z"
    assert(w:commit(out))
    assert.are.same(assert(pht.json_decode(img:image_config())).config, config_of(out).config)
  end

  it("refuses an env name holding '=' and changes nothing", function()
    rejected({ cmd = { "/bin/true" }, env = { ["A=B"] = "c" } }, "holds '='")
  end)

  it("refuses an empty env name and changes nothing", function()
    rejected({ env = { [""] = "x" } }, "is empty")
  end)

  it("refuses an empty label key and changes nothing", function()
    rejected({ labels = { [""] = "x" } }, "is empty")
  end)

  it("refuses a relative working_dir and changes nothing", function()
    rejected({ working_dir = "opt", user = "nobody" }, "not an absolute path")
  end)

  it("refuses set_config after commit", function()
    local img = assert(pht.open_image(base()))
    local w = assert(img:writer())
    assert(w:commit("docker-archive:" .. dir .. "/a.tar:x/y:z"))
    local ok, msg, code = w:set_config { user = "1" }
    assert.is_nil(ok)
    assert.are.equal("ESTATE", code)
    assert.truthy(msg:find("already committed", 1, true), msg)
  end)

  it("raises on wrong argument types and unknown fields", function()
    local w = assert(assert(pht.open_image(base())):writer())
    assert.has_error(function() w:set_config("cmd") end)
    assert.has_error(function() w:set_config { cmd = "/bin/sh -c x" } end)
    assert.has_error(function() w:set_config { cmd = { "/bin/sh", 42 } } end)
    assert.has_error(function() w:set_config { entrypoint = true } end)
    assert.has_error(function() w:set_config { env = { "NOEQUALS" } } end)
    assert.has_error(function() w:set_config { env = { A = 1 } } end)
    assert.has_error(function() w:set_config { labels = { "positional" } } end)
    assert.has_error(function() w:set_config { cmd = { "a\0b" } } end)
    assert.has_error(function() w:set_config { workdir = "/" } end, "bad argument #1 to 'set_config' (unknown field \"workdir\")")
    assert.has_error(function() w:set_config { user = 0 } end)
  end)
end)
