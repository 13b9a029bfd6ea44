-- Find and use the real services libpht's specs drive: a Docker engine,
-- image registries and the busybox base image. tools/test.sh starts them and
-- exports their addresses (doc/testing.md); a spec run by hand finds the ones
-- `tools/services.sh start-docker` / `start-registry` left in
-- $PHT_SERVICES_DIR (default /tmp/pht-services).
--
--   local support = require "support"
--   it("runs the train", function()
--     local ok, why = support.docker_available()
--     if not ok then return pending(why) end
--     ...
--   end)
local helpers = require "helpers"

local M = {}

M.base_tag = "pht-test/busybox:latest"

local function getenv(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- KEY=value from one of services.sh's env files in the state directory.
local function from_state(file, key)
  local dir = getenv("PHT_SERVICES_DIR") or "/tmp/pht-services"
  local f = io.open(dir .. "/" .. file, "r")
  if not f then return nil end
  local value
  for line in f:lines() do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k == key and v ~= "" then value = v end
  end
  f:close()
  return value
end

local function first_line(s)
  return (s or ""):match("^%s*([^\n]*)") or ""
end

-- Services the run requires (PHT_TEST_REQUIRE, comma-separated: docker,
-- registry, base-image). A required service that is missing is a failure,
-- not a pending spec.
function M.required(name)
  local list = getenv("PHT_TEST_REQUIRE") or ""
  for item in list:gmatch("[^,%s]+") do
    if item == name then return true end
  end
  return false
end

-- The Docker endpoint the specs use ("unix:///path/docker.sock"), or nil.
function M.docker_host()
  if getenv("PHT_TEST_DOCKER_ERROR") then return nil end
  local host = getenv("PHT_TEST_DOCKER_HOST") or getenv("DOCKER_HOST")
    or from_state("docker.env", "DOCKER_HOST")
  if host then return host end
  if helpers.sh("test -S /var/run/docker.sock") then return "unix:///var/run/docker.sock" end
  return nil
end

-- The filesystem path of a unix:// Docker endpoint, for code that takes a
-- socket path rather than DOCKER_HOST.
function M.docker_socket()
  local host = M.docker_host()
  return host and host:match("^unix://(.+)$") or nil
end

-- A shell command line running the docker client against the specs' daemon:
-- support.docker_cmd("image inspect " .. helpers.q(tag)).
function M.docker_cmd(args)
  local host = M.docker_host() or "unix:///var/run/docker.sock"
  return "DOCKER_HOST=" .. helpers.q(host) .. " docker " .. args
end

-- Run the docker client; returns ok and its stdout (ids, listings, what a
-- container printed), then its stderr. A failure returns both streams as the
-- second value, for the message. Never parse stderr: dockerd warns there.
function M.docker(args)
  local ok, out, err = helpers.sh_split(M.docker_cmd(args))
  if not ok then return false, out .. err, err end
  return true, out, err
end

local docker_state
-- true when a Docker daemon answers; false, reason otherwise (for pending).
function M.docker_available()
  if docker_state then return docker_state[1], docker_state[2] end
  local why = getenv("PHT_TEST_DOCKER_ERROR")
  local host = M.docker_host()
  if why then
    docker_state = { false, "no Docker daemon: " .. why }
  elseif not host then
    docker_state = { false, "no Docker daemon: run the specs through tools/test.sh, "
      .. "or eval \"$(tools/services.sh start-docker)\" first" }
  else
    local ok, out = M.docker("info --format '{{.ServerVersion}}'")
    if ok then
      docker_state = { true, nil }
    else
      docker_state = { false, "Docker daemon at " .. host .. " does not answer: " .. first_line(out) }
    end
  end
  return docker_state[1], docker_state[2]
end

local run_state
-- true when the daemon can run a container from the base image (loaded on
-- first use); false, reason otherwise.
function M.containers_available()
  if run_state then return run_state[1], run_state[2] end
  local ok, why = M.docker_available()
  if ok then
    local tag
    tag, why = M.load_base_image()
    if tag then
      local out
      ok, out = M.docker("run --rm --network none " .. helpers.q(tag) .. " /bin/sh -c 'echo ok'")
      if not (ok and out:match("^ok\n?$")) then
        ok, why = false, "docker run does not work here: " .. first_line(out)
      end
    else
      ok = false
    end
  end
  run_state = { ok, ok and nil or why }
  return run_state[1], run_state[2]
end

local registry_state
-- "127.0.0.1:PORT" of the test registry when it answers GET /v2/; nil, reason.
function M.registry()
  if registry_state then return registry_state[1], registry_state[2] end
  local addr = getenv("PHT_TEST_REGISTRY") or from_state("registry.env", "PHT_TEST_REGISTRY")
  if not addr then
    local why = getenv("PHT_TEST_REGISTRY_ERROR")
    registry_state = { nil, "no registry: " .. (why or "run the specs through tools/test.sh, "
      .. "or eval \"$(tools/services.sh start-registry)\" first") }
  else
    local ok, out = helpers.sh("curl -fsS -o /dev/null --max-time 10 " .. helpers.q("http://" .. addr .. "/v2/"))
    if ok then
      registry_state = { addr, nil }
    else
      registry_state = { nil, "registry at " .. addr .. " does not answer: " .. first_line(out) }
    end
  end
  return registry_state[1], registry_state[2]
end

-- The test registries beside the plain one, as tools/services.sh starts
-- them: "tls" (TLS with the test CA, anonymous), "basic" (TLS and htpasswd
-- basic auth for one robot account) and "token" (TLS and token auth through
-- tools/token-service.py).
local registry_kinds = {
  tls = { file = "registry-tls.env", var = "PHT_TEST_REGISTRY_TLS", answers = "200" },
  basic = { file = "registry-basic.env", var = "PHT_TEST_REGISTRY_BASIC", answers = "401" },
  token = { file = "registry-token.env", var = "PHT_TEST_REGISTRY_TOKEN", answers = "401" },
}
local service_state = {}

-- One of those registries as a table when it answers GET /v2/ (200, or 401
-- where it wants credentials), else nil, reason:
--   addr       "127.0.0.1:PORT" (https)
--   ca         the test CA's certificate; cert_dir: a --cert-dir with it
--   storage    (tls) the registry's storage directory
--   user, password            (basic) the robot account
--   realm, service, users, log (token) the token service's URL, the service
--              name, the directory for user files, its request log
function M.registry_service(kind)
  local k = assert(registry_kinds[kind], "unknown registry kind " .. tostring(kind))
  if service_state[kind] then return service_state[kind][1], service_state[kind][2] end
  local function get(var) return getenv(var) or from_state(k.file, var) end
  local addr = get(k.var)
  if not addr then
    local why = getenv(k.var .. "_ERROR")
    service_state[kind] = { nil, "no " .. kind .. " registry: " .. (why or "run the specs through "
      .. "tools/test.sh, or eval \"$(tools/services.sh start-registry-" .. kind .. ")\" first") }
    return nil, service_state[kind][2]
  end
  local svc = {
    addr = addr, ca = get("PHT_TEST_REGISTRY_CA"), cert_dir = get("PHT_TEST_REGISTRY_CERT_DIR"),
    storage = get("PHT_TEST_REGISTRY_TLS_STORAGE"),
    user = get("PHT_TEST_REGISTRY_BASIC_USER"), password = get("PHT_TEST_REGISTRY_BASIC_PASSWORD"),
    realm = get("PHT_TEST_TOKEN_REALM"), service = get("PHT_TEST_TOKEN_SERVICE"),
    users = get("PHT_TEST_TOKEN_USERS"), log = get("PHT_TEST_TOKEN_LOG"),
  }
  local ok, code = helpers.sh("curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "
    .. helpers.q(svc.ca or "/nonexistent") .. " " .. helpers.q("https://" .. addr .. "/v2/"))
  code = first_line(code)
  if ok and code == k.answers then
    service_state[kind] = { svc, nil }
  else
    service_state[kind] = { nil, kind .. " registry at " .. addr .. " does not answer GET /v2/ with "
      .. k.answers .. ": " .. code }
  end
  return service_state[kind][1], service_state[kind][2]
end

-- Give the token registry's token service a user: conf is what
-- tools/token-service.py reads (password, access = {pattern = {actions}},
-- revoked, ttl, expires_in, expired_first, expired). Returns the user file;
-- remove it when done (finally(function() os.remove(file) end)).
function M.token_user(svc, user, conf)
  local file = svc.users .. "/" .. M.unique_name("user") .. ".json"
  local tmp = file .. ".tmp"
  helpers.write(tmp, assert(require("pht").json_encode({ users = { [user] = conf } })))
  assert(os.rename(tmp, file))
  return file
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Path of the busybox base image as a docker-archive tar, and its tag. Built
-- by tools/make-base-image.sh (no daemon needed) when the run did not export
-- PHT_TEST_BASE_IMAGE. Shared by all specs: copy it before changing it.
function M.base_image()
  local path = getenv("PHT_TEST_BASE_IMAGE")
  if path and exists(path) then return path, getenv("PHT_TEST_BASE_TAG") or M.base_tag end
  path = helpers.build .. "/test-images/busybox.tar"
  if not exists(path) then
    local ok, out = helpers.sh(helpers.q(helpers.root .. "/tools/make-base-image.sh")
      .. " -o " .. helpers.q(path) .. " -t " .. helpers.q(M.base_tag))
    if not ok then return nil, "cannot build the base image: " .. out end
  end
  return path, M.base_tag
end

-- Directory of the base image as an OCI image layout (reference "latest").
-- Shared: copy it (cp -a) before changing it.
function M.base_image_oci()
  local dir = getenv("PHT_TEST_BASE_IMAGE_OCI")
  if dir and exists(dir .. "/index.json") then return dir end
  dir = helpers.build .. "/test-images/busybox-oci"
  if not exists(dir .. "/index.json") then
    local ok, out = helpers.sh(helpers.q(helpers.root .. "/tools/make-base-image.sh")
      .. " -o " .. helpers.q(helpers.build .. "/test-images/busybox.tar")
      .. " -t " .. helpers.q(M.base_tag) .. " --oci " .. helpers.q(dir))
    if not ok then return nil, "cannot build the base image layout: " .. out end
  end
  return dir
end

-- Make sure the daemon has the base image; returns its tag, or nil, reason.
function M.load_base_image()
  local ok, why = M.docker_available()
  if not ok then return nil, why end
  local path, tag = M.base_image()
  if not path then return nil, tag end
  if M.docker("image inspect --format '{{.Id}}' " .. helpers.q(tag)) then return tag end
  local out
  ok, out = M.docker("load --input " .. helpers.q(path))
  if not ok then return nil, "docker load rejected " .. path .. ": " .. first_line(out) end
  return tag
end

local seq = 0
-- A name no other spec run uses at the same time, for registry repositories,
-- image tags and containers: "pht-test-<what>-<engine>-<pid>-<n>".
function M.unique_name(what)
  seq = seq + 1
  local f = io.open("/proc/self/stat", "r")
  local pid = f and f:read("*l"):match("^(%d+)") or tostring(os.time())
  if f then f:close() end
  return string.format("pht-test-%s-%s-%s-%d", what or "x", jit and "jit" or "lua", pid, seq)
end

return M
