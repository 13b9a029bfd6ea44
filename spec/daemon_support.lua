-- Support for the specs that keep trains in the suite's Docker daemon: the
-- docker CLI as the oracle (image ids, dangling images, containers, `docker
-- save` for reading layers with tar), reference trains loaded under names of
-- their own, and tampering with an image in place through libpht's
-- docker-daemon transport.
local helpers = require "helpers"
local support = require "support"
local pht = require "pht"
local S = require "wf_support"

local M = {}
local q = helpers.q

-- true when the specs can drive the daemon (containers too when need_run),
-- else false and why (for pending). libpht in this process reads
-- DOCKER_HOST, so it must name the daemon the support module found.
function M.ready(need_run)
  local ok, why
  if need_run then ok, why = support.containers_available() else ok, why = support.docker_available() end
  if not ok then return false, why end
  local want = support.docker_host()
  if (os.getenv("DOCKER_HOST") or "unix:///var/run/docker.sock") ~= want then
    return false, "export DOCKER_HOST=" .. want .. " so that libpht in this process reaches the daemon"
  end
  return true
end

-- The docker CLI against the suite's daemon; fails the spec on error.
function M.docker(args)
  local ok, out = support.docker(args)
  if not ok then error("docker " .. args .. " failed:\n" .. out, 2) end
  return out
end

-- The pht binary with DOCKER_HOST set to the suite's daemon.
function M.env()
  return { DOCKER_HOST = support.docker_host() }
end

-- The image id a name points at, or nil.
function M.id(name)
  local ok, out = support.docker("image inspect --format '{{.Id}}' " .. q(name))
  if not ok then return nil end
  return (out:match("(sha256:%x+)"))
end

-- The engine's storage driver ("overlay2", "vfs", ...).
function M.driver()
  return (M.docker("info --format '{{.Driver}}'"):match("%S+"))
end

-- Whether libpht reads the engine's overlay2 store here (doc/daemon.md):
-- true, or false and why not (for pending).
function M.store_ready()
  local ok, why = M.ready(false)
  if not ok then return false, why end
  if M.driver() ~= "overlay2" then return false, "the engine's storage driver is " .. tostring(M.driver()) end
  if helpers.stdout("id -u"):match("%d+") ~= "0" then
    return false, "not root: the store's opaque marks (trusted.* xattrs) are hidden"
  end
  return true
end

-- Now, as the engine's event filters take it: seconds with nanoseconds.
function M.now()
  return (helpers.stdout("date +%s.%N"):match("[%d.]+"))
end

-- How many images the engine saved (GET /images/get: `docker save`, a
-- transport landing every layer) between two M.now() times.
function M.saves(since, till)
  local out = M.docker("events --since " .. since .. " --until " .. till
    .. " --filter type=image --filter event=save --format '{{.Action}}'")
  local n = 0
  for _ in out:gmatch("save") do n = n + 1 end
  return n
end

-- Ids of the daemon's dangling images, as a set.
function M.dangling()
  local out = M.docker("images -q --no-trunc -f dangling=true")
  local set = {}
  for id in out:gmatch("sha256:%x+") do set[id] = true end
  return set
end

-- Dangling images that are not in `before` (a set from M.dangling()).
function M.new_dangling(before)
  local list = {}
  for id in pairs(M.dangling()) do
    if not before[id] then list[#list + 1] = id end
  end
  table.sort(list)
  return list
end

-- The new dangling images (not in `before`) that come from a container
-- `pht run` made (its label): what a run must not leave. Other dangling
-- images, which specs running at the same time on a shared daemon make
-- (some with pre-run plaintext, on purpose), are not counted.
function M.run_dangling(before)
  local list = {}
  for _, id in ipairs(M.new_dangling(before)) do
    local lok, labels = support.docker("image inspect --format '{{json .Config.Labels}}' " .. id)
    if lok and labels:find("org.pht.libpht.run", 1, true) then
      list[#list + 1] = id
    end
  end
  return list
end

-- The ids of the plaintext images a `pht run -v` reported on stderr: what
-- its pre-run wrote and what its commit made.
function M.run_plaintext_ids(err)
  local ids = {}
  for id in err:gmatch("the plaintext image pht%-run%-%x+:[%w-]+ is (sha256:%x+)") do ids[#ids + 1] = id end
  return ids
end

-- Names of the containers (any state) whose name starts with prefix.
function M.containers(prefix)
  local out = M.docker("ps -a --format '{{.Names}}'")
  local list = {}
  for name in out:gmatch("[^\n]+") do
    if name:sub(1, #prefix) == prefix then list[#list + 1] = name end
  end
  return list
end

-- The label libpht puts on the containers it creates to read an image's /opt.
M.SCRATCH_LABEL = "org.pht.libpht.scratch"

-- The scratch containers in the daemon: { {id = ..., pid = owner's pid} }.
function M.scratch()
  local out = M.docker("ps -a --no-trunc --filter label=" .. M.SCRATCH_LABEL
    .. " --format '{{.ID}} {{.Label \"" .. M.SCRATCH_LABEL .. "\"}}'")
  local list = {}
  for id, pid in out:gmatch("(%x+) (%d+)%.[^\n]*") do list[#list + 1] = { id = id, pid = tonumber(pid) } end
  return list
end

-- The ids of the scratch containers pid made.
function M.scratch_of(pid)
  local ids = {}
  for _, c in ipairs(M.scratch()) do if c.pid == pid then ids[#ids + 1] = c.id end end
  return ids
end

-- Start `pht ARGS` in the background with env (a table) and DOCKER_HOST;
-- returns a job: job.pid, job:wait() -> exit code, stdout, stderr.
function M.start(args, env)
  local dir = helpers.tmpdir()
  local prefix = ""
  for k, v in pairs(M.env()) do prefix = prefix .. k .. "=" .. q(v) .. " " end
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. q(v) .. " " end
  helpers.run("( " .. prefix .. q(S.bin) .. " " .. args .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err")
    .. " </dev/null & echo $! >" .. q(dir .. "/pid") .. "; wait $!; echo $? >" .. q(dir .. "/code")
    .. " ) >/dev/null 2>&1 </dev/null &")
  local job = { dir = dir }
  local function wait_for(file, what)
    local ok = helpers.sh("for i in $(seq 600); do [ -s " .. q(file) .. " ] && break; sleep 0.1; done; [ -s "
      .. q(file) .. " ]")
    assert(ok, "the background pht did not " .. what .. " within 60 s")
    return helpers.read(file)
  end
  job.pid = tonumber(wait_for(dir .. "/pid", "start"):match("%d+"))
  function job.wait()
    local code = tonumber(wait_for(dir .. "/code", "end"):match("%d+"))
    return code, helpers.read(dir .. "/out"), helpers.read(dir .. "/err")
  end
  return job
end

-- Wait (up to 60 s) until process pid has a scratch container; its id.
function M.wait_scratch(pid)
  for _ = 1, 600 do
    local ids = M.scratch_of(pid)
    if ids[1] then return ids[1] end
    helpers.sh("sleep 0.1")
  end
  error("process " .. pid .. " created no scratch container within 60 s", 2)
end

-- Remove tags and images, ignoring those already gone.
function M.rmi(...)
  for _, name in ipairs({ ... }) do support.docker("rmi " .. q(name)) end
end

-- `docker load` a reference stage and name it REPO:latest (and REPO:base for
-- its first layer's image, when with_base). The archive's own tag goes again.
function M.load_stage(stage_file, repo)
  M.docker("load --quiet --input " .. q(helpers.vectors .. "/" .. stage_file))
  M.docker("tag pht-bench/ref-0:latest " .. q(repo .. ":latest"))
  support.docker("rmi pht-bench/ref-0:latest")
  return repo .. ":latest"
end

-- Save an image with the docker CLI; the path of the tar.
function M.save(name)
  local path = helpers.tmpdir() .. "/saved.tar"
  M.docker("save -o " .. q(path) .. " " .. q(name))
  return path
end

-- Change an image in the daemon in place: a new layer on top, written
-- through the docker-daemon transport. edit(w, img) adds entries.
function M.tamper(ref, edit, history)
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer({}))
  edit(w, img)
  assert(w:commit(ref, { history = history or "tampered" }))
  img:close()
end

return M
