-- The container a station runs a train in (scripts/run.lua, `pht run`): the
-- station's run options (network, CPU and memory limits, data mounts,
-- environment) checked and turned into the Docker Engine's create object.
-- The train's own image config says what runs (Cmd, Entrypoint); nothing
-- here overrides it. Mounts may not reach /opt: what the train leaves there
-- is what post-run seals, so a mount could neither hide a result nor slip a
-- file past the commit.
local pht = require "pht"
local train = require "pht.train"

local M = {}

local fmt = string.format

-- The labels on the containers and images `pht run` makes: the run's name,
-- and its process's owner mark (pht.owner), by which a later run finds what
-- a killed one left (pht.owner_gone).
M.LABEL = "org.pht.libpht.run"
M.OWNER_LABEL = "org.pht.libpht.run.owner"

-- Network modes a train may be given. "none" is the default: a train talks
-- to nothing.
M.NETWORKS = { none = true, bridge = true, host = true }

local function starts_with(s, prefix) return s:sub(1, #prefix) == prefix end

-- A container path for a mount target: absolute, no "..", not /opt or below
-- it, nor / (which holds /opt).
local function check_target(target, what)
  if type(target) ~= "string" or target:sub(1, 1) ~= "/" then
    return nil, fmt("%s: the target %s is not an absolute path", what, tostring(target))
  end
  for part in target:gmatch("[^/]+") do
    if part == ".." then return nil, fmt("%s: the target %s holds \"..\"", what, target) end
  end
  local norm = target:gsub("/+", "/"):gsub("(.)/$", "%1")
  if norm == "/" or norm == train.OPT or starts_with(norm, train.OPT .. "/") then
    return nil, fmt("%s: the target %s would cover %s, which holds the train and its results", what,
      target, train.OPT)
  end
  return norm
end

-- "SRC:DST[:ro|rw]" (docker run -v) as a HostConfig.Mounts entry, or nil
-- and why. SRC is a host path (absolute) or a named volume.
function M.parse_volume(spec)
  local what = "--volume " .. tostring(spec)
  local parts = {}
  for p in (tostring(spec) .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  if #parts < 2 or #parts > 3 or parts[1] == "" then
    return nil, what .. ": give SRC:DST or SRC:DST:ro"
  end
  local mode = parts[3] or "rw"
  if mode ~= "ro" and mode ~= "rw" then return nil, what .. ": the mode is ro or rw, not " .. mode end
  local target, err = check_target(parts[2], what)
  if not target then return nil, err end
  local kind = parts[1]:sub(1, 1) == "/" and "bind" or "volume"
  if kind == "volume" and not parts[1]:match("^[%w][%w_.%-]*$") then
    return nil, what .. ": the source is neither an absolute host path nor a volume name"
  end
  return { Type = kind, Source = parts[1], Target = target, ReadOnly = mode == "ro" }
end

local MOUNT_KEYS = {
  type = "type", source = "source", src = "source", target = "target", destination = "target",
  dst = "target", readonly = "readonly", ro = "readonly",
}

-- "type=bind,source=SRC,target=DST[,readonly]" (docker run --mount) as a
-- HostConfig.Mounts entry, or nil and why. Types bind, volume and tmpfs.
function M.parse_mount(spec)
  local what = "--mount " .. tostring(spec)
  local m = {}
  for item in tostring(spec):gmatch("[^,]+") do
    local k, v = item:match("^([^=]+)=(.*)$")
    k = k or item
    local key = MOUNT_KEYS[k]
    if not key then return nil, fmt("%s: libpht does not pass on the mount option %s", what, k) end
    if m[key] ~= nil then return nil, fmt("%s: %s given twice", what, k) end
    if key == "readonly" then
      if v ~= nil and v ~= "true" and v ~= "false" and v ~= "1" and v ~= "0" then
        return nil, fmt("%s: readonly is true or false, not %s", what, v)
      end
      m.readonly = v == nil or v == "true" or v == "1"
    else
      if v == nil or v == "" then return nil, fmt("%s: %s needs a value", what, k) end
      m[key] = v
    end
  end
  local kind = m.type or "volume"
  if kind ~= "bind" and kind ~= "volume" and kind ~= "tmpfs" then
    return nil, fmt("%s: the type is bind, volume or tmpfs, not %s", what, kind)
  end
  local target, err = check_target(m.target, what)
  if not target then return nil, err end
  if kind == "bind" and not (m.source and m.source:sub(1, 1) == "/") then
    return nil, what .. ": a bind mount needs an absolute source"
  end
  if kind == "tmpfs" and m.source then return nil, what .. ": a tmpfs mount has no source" end
  return { Type = kind, Source = m.source, Target = target, ReadOnly = m.readonly or false }
end

local UNITS = { b = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 }

-- "512m", "2g", "1048576" (docker run --memory) in bytes, or nil and why.
function M.parse_memory(s)
  local n, unit = tostring(s):lower():match("^(%d+%.?%d*)([bkmg]?)$")
  local v = n and tonumber(n) * UNITS[unit == "" and "b" or unit]
  if not v or v < 6 * 1024 ^ 2 then
    return nil, fmt("--memory %s: give a size of at least 6m (a number with b, k, m or g)", tostring(s))
  end
  return math.floor(v)
end

-- "1.5" (docker run --cpus) in units of 1e-9 CPUs, or nil and why.
function M.parse_cpus(s)
  local v = tostring(s):match("^%d+%.?%d*$") and tonumber(s)
  if not v or v <= 0 or v > 1024 then return nil, fmt("--cpus %s: give a number of CPUs above 0", tostring(s)) end
  return math.floor(v * 1e9 + 0.5)
end

-- "NAME=VALUE", or "NAME": the variable as this process has it (left out
-- when it has none), as docker run -e does. getenv is os.getenv unless given.
function M.parse_env(spec, getenv)
  getenv = getenv or os.getenv
  local name, value = tostring(spec):match("^([^=]*)=(.*)$")
  name = name or tostring(spec)
  if not name:match("^[%a_][%w_]*$") then return nil, fmt("--env %s: %s is not a variable name", spec, name) end
  if value == nil then
    value = getenv(name)
    if value == nil then return false end
  end
  return name .. "=" .. value
end

-- The Engine's create object (a Lua table) for a train in image `image`
-- (an id) with the run options o: network, cpus, memory, volumes, mounts,
-- env (lists of strings as the command line gives them), labels. nil and
-- the first option that is wrong.
function M.create_config(image, o)
  o = o or {}
  local network = o.network or "none"
  if not M.NETWORKS[network] then
    return nil, fmt("--network %s: libpht runs trains with none, bridge or host", tostring(network))
  end
  local host = { NetworkMode = network }
  local c = { Image = image, Tty = false, OpenStdin = false, HostConfig = host,
    Labels = { [M.LABEL] = o.label or "pht run", [M.OWNER_LABEL] = o.owner } }
  if network == "none" then c.NetworkDisabled = true end
  for k, v in pairs(o.labels or {}) do c.Labels[k] = v end
  if o.cpus then
    local n, err = M.parse_cpus(o.cpus)
    if not n then return nil, err end
    host.NanoCpus = n
  end
  if o.memory then
    local n, err = M.parse_memory(o.memory)
    if not n then return nil, err end
    host.Memory = n
  end
  local mounts = {}
  for _, v in ipairs(o.volumes or {}) do
    local m, err = M.parse_volume(v)
    if not m then return nil, err end
    mounts[#mounts + 1] = m
  end
  for _, v in ipairs(o.mounts or {}) do
    local m, err = M.parse_mount(v)
    if not m then return nil, err end
    mounts[#mounts + 1] = m
  end
  if #mounts > 0 then host.Mounts = mounts end
  local env = {}
  for _, v in ipairs(o.env or {}) do
    local e, err = M.parse_env(v, o.getenv)
    if e == nil then return nil, err end
    if e then env[#env + 1] = e end
  end
  if #env > 0 then c.Env = env end
  return c
end

-- What the image config `cfg` (the Engine's image inspect answer, decoded)
-- runs: Entrypoint then Cmd as one argv list, or nil and why.
function M.command(cfg)
  local config = type(cfg) == "table" and cfg.Config or nil
  local argv = {}
  for _, key in ipairs({ "Entrypoint", "Cmd" }) do
    local list = type(config) == "table" and config[key] or nil
    if type(list) == "table" then
      for _, a in ipairs(list) do argv[#argv + 1] = tostring(a) end
    end
  end
  if #argv == 0 then
    return nil, "the train's image config has neither Entrypoint nor Cmd, so nothing would run; "
      .. "build it with a command (pht build --run)"
  end
  return argv
end

-- "K=V" items as a map.
local function env_map(list)
  local m = {}
  for _, item in ipairs(type(list) == "table" and list or {}) do
    local k, v = tostring(item):match("^([^=]*)=(.*)$")
    if k then m[k] = v end
  end
  return m
end

-- What turns the runtime config of inspect answer `after` (a committed
-- container) back into that of `before` (its image), as an
-- image_writer:set_config spec: the variables and labels the container
-- added or changed, and the run's own labels (M.LABEL, M.OWNER_LABEL)
-- wherever they came from. nil when nothing differs.
function M.config_changes(before, after)
  local b, a = before.Config or {}, after.Config or {}
  local spec, any = { env = {}, labels = {} }, false
  for _, pair in ipairs({ { "env", env_map(b.Env), env_map(a.Env) },
    { "labels", type(b.Labels) == "table" and b.Labels or {}, type(a.Labels) == "table" and a.Labels or {} } }) do
    local field, was, now = pair[1], pair[2], pair[3]
    for k, v in pairs(now) do
      if was[k] ~= v then
        if was[k] == nil then spec[field][k] = false else spec[field][k] = was[k] end
        any = true
      end
    end
  end
  -- the run's own labels go, whoever put them there (pre-run marks its image too)
  local labels = type(a.Labels) == "table" and a.Labels or {}
  for _, k in ipairs({ M.LABEL, M.OWNER_LABEL }) do
    if labels[k] ~= nil then spec.labels[k], any = false, true end
  end
  return any and spec or nil
end

-- A name for the run's containers and images: pht-run-<hex>.
function M.run_name()
  return "pht-run-" .. pht.hex(pht.random(8))
end

return M
