-- The gateway's configuration: a Lua file that returns a table (see
-- examples/openresty/gateway.conf.lua and doc/gateway.md). It is read once,
-- by init_by_lua in the nginx master, and checked before nginx starts
-- serving, so a mistake stops nginx with a message instead of failing
-- requests later. Keys are named by path; the requests never carry any.
local M = {}

local DEFAULTS = {
  tmpdir = "/tmp/pht-gateway",
  max_jobs = 2,
  queue_timeout = 10,
  job_time_limit = 120,
  thread_pool = "pht_verify",
  trim_memory = true,
}

local function fail(path, fmt, ...)
  error(string.format("gateway configuration %s: " .. fmt, path, ...), 0)
end

local function read_secret_file(path, file)
  local f, err = io.open(file, "rb")
  if not f then fail(path, "cannot read the password file: %s", tostring(err)) end
  local s = f:read("*a") or ""
  f:close()
  return (s:gsub("\r?\n$", ""))
end

local function positive(path, cfg, name)
  local v = cfg[name]
  if type(v) ~= "number" or v <= 0 or v ~= math.floor(v) then
    fail(path, "%s must be a positive integer, got %s", name, tostring(v))
  end
end

-- Load and check the file; raises a message naming the file and the field.
-- Returns the table with defaults filled in and station ids as strings.
function M.load(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then fail(path, "cannot load: %s", tostring(err)) end
  if setfenv then setfenv(chunk, {}) end -- Lua 5.1: loadfile has no env argument
  local ok, cfg = pcall(chunk)
  if not ok then fail(path, "failed: %s", tostring(cfg)) end
  if type(cfg) ~= "table" then fail(path, "must return a table") end

  for k, v in pairs(DEFAULTS) do
    if cfg[k] == nil then cfg[k] = v end
  end
  for _, name in ipairs({ "max_jobs", "queue_timeout", "job_time_limit" }) do positive(path, cfg, name) end
  if type(cfg.tmpdir) ~= "string" or cfg.tmpdir:sub(1, 1) ~= "/" then
    fail(path, "tmpdir must be an absolute path")
  end
  if type(cfg.trim_memory) ~= "boolean" then fail(path, "trim_memory must be true or false") end
  if cfg.station_script ~= nil and type(cfg.station_script) ~= "string" then
    fail(path, "station_script must be a path")
  end
  if cfg.masters ~= nil then
    if type(cfg.masters) ~= "table" then fail(path, "masters must be a list of image references") end
    for i, m in ipairs(cfg.masters) do
      if type(m) ~= "string" or m == "" then
        fail(path, "masters[%d] must be an image reference (docker-daemon:NAME@sha256:..., oci:DIR:TAG, ...)", i)
      end
    end
    if #cfg.masters == 0 then cfg.masters = nil end
  end

  if type(cfg.stations) ~= "table" or #cfg.stations == 0 then
    fail(path, "stations must list at least one station ({ id = ..., private_key = ... })")
  end
  cfg.by_id = {}
  for i, s in ipairs(cfg.stations) do
    if type(s) ~= "table" then fail(path, "stations[%d] must be a table", i) end
    if type(s.id) ~= "string" and type(s.id) ~= "number" then
      fail(path, "stations[%d].id must be the station id on train routes", i)
    end
    s.id = tostring(s.id)
    if type(s.private_key) ~= "string" or s.private_key:sub(1, 1) ~= "/" then
      fail(path, "stations[%d].private_key must be the absolute path of the station's PEM key", i)
    end
    if s.password_file ~= nil then
      if type(s.password_file) ~= "string" then fail(path, "stations[%d].password_file must be a path", i) end
      s.password = read_secret_file(path, s.password_file)
    end
    if cfg.by_id[s.id] then fail(path, "station %s is configured twice", s.id) end
    cfg.by_id[s.id] = s
  end
  if cfg.default_station ~= nil then
    cfg.default_station = tostring(cfg.default_station)
    if not cfg.by_id[cfg.default_station] then
      fail(path, "default_station %s is not one of the stations", cfg.default_station)
    end
  elseif #cfg.stations == 1 then
    cfg.default_station = cfg.stations[1].id
  end
  return cfg
end

-- The ids of the configured stations, for messages.
function M.station_ids(cfg)
  local ids = {}
  for i, s in ipairs(cfg.stations) do ids[i] = s.id end
  return table.concat(ids, ", ")
end

return M
