-- libpht's station gateway: the request handlers nginx.conf points at.
--
--   init_by_lua         require("pht_gateway").init(CONFIG_PATH)
--   init_worker_by_lua  require("pht_gateway").init_worker()
--   content_by_lua      require("pht_gateway").health() / .verify() / .inspect() / ...
--
-- The handlers run in the worker's event loop and only do cheap things:
-- check the request, find the file nginx streamed the body into, wait for a
-- free job slot, and hand the path to pht_gateway.job on the thread pool.
-- Verification (RSA, AES, SHA-512 over the whole train) runs there, so a
-- long verification never holds up the other requests of the worker.
local config = require "pht_gateway.config"

local M = {}

local cfg        -- the checked configuration (init, in the master)
local sema       -- job slots of this worker (init_worker)
local warm = false -- the thread pool's VMs have loaded the workflow
local key_state  -- per station: fingerprint or the reason its key cannot be used
local tmp_error  -- why the worker cannot use cfg.tmpdir, or nil
local active = 0 -- train requests of this worker between body and answer
local trim_pending = false

-- glibc keeps the memory a burst of requests freed (the request pools of
-- the event loop, the malloc arenas of the pool's threads) for reuse instead
-- of giving it back to the system. Once the worker is idle, a full garbage
-- collection and malloc_trim(0) return it; without glibc (e.g. musl) the
-- gateway does neither.
local malloc_trim
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int malloc_trim(size_t pad);")
    local found, fn = pcall(function() return ffi.C.malloc_trim end)
    if found then malloc_trim = fn end
  end
end

local function trim_if_idle(premature)
  trim_pending = false
  if premature or active > 0 then return end
  collectgarbage() -- the burst's request tables and reports, then their pages
  malloc_trim(0)
end

-- After the last job of a burst: trim a second later, when the finished
-- requests have released their pools, unless new ones came.
local function schedule_trim()
  if not malloc_trim or not cfg.trim_memory or trim_pending or active > 0 then return end
  trim_pending = true
  local ok = ngx.timer.at(1, trim_if_idle)
  if not ok then trim_pending = false end
end

local function send(status, value, extra_headers)
  local pht = require "pht"
  local text = pht.json_encode(value) or '{"error":"cannot encode the response"}'
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  for k, v in pairs(extra_headers or {}) do ngx.header[k] = v end
  ngx.print(text, "\n")
  return true
end

local function send_error(status, message, extra_headers)
  return send(status, { error = message, status = status }, extra_headers)
end

-- Phases -----------------------------------------------------------------------

-- Read the configuration in the master, before the workers fork: a broken
-- file stops nginx at startup with the reason.
function M.init(path, vm_pool_size)
  cfg = config.load(path)
  -- Every job slot needs a VM of the thread pool; more slots than VMs would
  -- queue jobs inside nginx, past the gateway's own limits.
  if vm_pool_size and cfg.max_jobs > vm_pool_size then
    error(string.format("%s: max_jobs = %d exceeds the thread pool's %d Lua VMs "
      .. "(lua_worker_thread_vm_pool_size; render with --threads %d or more)",
      path, cfg.max_jobs, vm_pool_size, cfg.max_jobs), 0)
  end
  -- Load the module once here too, so a wrong lua_package_cpath fails now.
  require "pht"
end

-- Per worker: the private temporary directory, the job slots, and a check
-- that each station's key can be read by the worker's user.
function M.init_worker()
  local pht = require "pht"
  -- The worker's user must be able to make private directories in tmpdir.
  local ok, err = pht.mkdir(cfg.tmpdir, tonumber("700", 8), true)
  if ok then
    local probe
    probe, err = pht.mkdtemp(cfg.tmpdir)
    if probe then pht.remove_tree(probe) end
    ok = probe ~= nil
  end
  if not ok then
    tmp_error = "the gateway's tmpdir is not usable"
    ngx.log(ngx.ERR, "pht gateway: tmpdir ", cfg.tmpdir, ": ", err)
  end
  sema = assert(require("ngx.semaphore").new(cfg.max_jobs))
  -- Fill the worker's thread-pool VMs now (one job per VM, all at once), so
  -- they load pht and the workflow scripts at start rather than under the
  -- first requests; /health reports "warm" once done.
  ngx.timer.at(0, function(premature)
    if premature then return end
    -- ngx.thread.spawn takes a Lua function only (lua-nginx-module refuses
    -- a C function such as ngx.run_worker_thread itself). Each warm-up job
    -- holds a job slot like a request's, so that a request arriving during
    -- the warm-up waits for a free VM instead of finding none.
    local function warm_one()
      if not sema:wait(cfg.queue_timeout) then return false end
      local pok, tok, status = pcall(ngx.run_worker_thread, cfg.thread_pool, "pht_gateway.job", "warm")
      sema:post(1)
      return pok and tok, status
    end
    local threads = {}
    for i = 1, cfg.max_jobs do
      threads[i] = ngx.thread.spawn(warm_one)
    end
    local all = true
    for _, t in ipairs(threads) do
      local ok, tok, status = ngx.thread.wait(t)
      if not (ok and tok and status == 200) then all = false end
    end
    if not all then ngx.log(ngx.WARN, "pht gateway: warming the thread pool's VMs failed") end
    warm = all
  end)
  key_state = {}
  for _, s in ipairs(cfg.stations) do
    local key, kerr = pht.load_private_key_file(s.private_key, s.password)
    if key then
      key_state[s.id] = { fingerprint = key:fingerprint() }
      key:close()
    else
      key_state[s.id] = { error = "the station's private key cannot be loaded" }
      ngx.log(ngx.ERR, "pht gateway: station ", s.id, ": ", kerr)
    end
  end
end

-- Requests -----------------------------------------------------------------------

-- GET /health: 200 when every configured station key loads, else 503.
function M.health()
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    return send_error(405, "use GET", { Allow = "GET, HEAD" })
  end
  local pht = require "pht"
  local stations, healthy = {}, true
  for i, s in ipairs(cfg.stations) do
    local st = key_state[s.id] or {}
    stations[i] = { id = s.id, key_fingerprint = st.fingerprint, error = st.error }
    if st.error then healthy = false end
  end
  if tmp_error then healthy = false end
  return send(healthy and 200 or 503, {
    status = healthy and "ok" or "error",
    error = tmp_error,
    libpht = pht.version,
    stations = stations,
    default_station = cfg.default_station,
    warm = warm,
    jobs = { max = cfg.max_jobs, running = cfg.max_jobs - sema:count() },
  })
end

-- The configured station a request asks for (?station=ID), else the default.
local function station_of_request()
  local arg = ngx.req.get_uri_args(8).station
  if type(arg) == "table" then return nil, "give ?station= once" end
  if arg == nil or arg == true or arg == "" then
    if not cfg.default_station then
      return nil, "this gateway serves several stations (" .. config.station_ids(cfg)
        .. "): name one with ?station=ID"
    end
    return cfg.by_id[cfg.default_station]
  end
  local s = cfg.by_id[arg]
  if not s then
    return nil, "station " .. arg .. " is not configured on this gateway (stations: "
      .. config.station_ids(cfg) .. ")"
  end
  return s
end

-- The file nginx wrote the body into (client_body_in_file_only), never the
-- body in memory. nil, message for a missing or empty body.
local function body_file()
  ngx.req.read_body()
  local path = ngx.req.get_body_file()
  if not path then
    if ngx.req.get_body_data() then -- only when nginx.conf lost client_body_in_file_only
      return nil, "the gateway must have client_body_in_file_only on"
    end
    return nil, "empty body: POST a train as a docker-archive tar (docker save)"
  end
  local f = io.open(path, "rb")
  local size = f and f:seek("end") or 0
  if f then f:close() end
  if size == 0 then return nil, "empty body: POST a train as a docker-archive tar (docker save)" end
  return path
end

-- Run job.fn(path, opts) on the thread pool within a job slot; sends the
-- job's status and JSON.
local run_job_counted

local function run_job(fn, path, opts)
  active = active + 1
  local pok, err = pcall(run_job_counted, fn, path, opts)
  active = active - 1
  schedule_trim()
  if not pok then error(err, 0) end
end

function run_job_counted(fn, path, opts)
  local ok, err = sema:wait(cfg.queue_timeout)
  if not ok then
    if err == "timeout" then
      return send_error(503, "the gateway is busy: no verification slot came free within "
        .. cfg.queue_timeout .. " s", { ["Retry-After"] = tostring(cfg.queue_timeout) })
    end
    return send_error(500, "cannot wait for a verification slot")
  end
  local pok, tok, status, text, detail = pcall(ngx.run_worker_thread, cfg.thread_pool,
    "pht_gateway.job", fn, path, opts)
  sema:post(1)
  if not pok or not tok then
    ngx.log(ngx.ERR, "pht gateway: ", fn, " job failed: ", tostring(pok and status or tok))
    return send_error(500, "the verification job failed; see the gateway's error log")
  end
  if detail then ngx.log(status >= 500 and ngx.ERR or ngx.INFO, "pht gateway: ", fn, ": ", detail) end
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(text, "\n")
  return true
end

-- ?image=NAME:TAG picks one image of an archive that holds several (a train
-- saved with its REPO:base, say). nil when not given.
local function image_of_request()
  local arg = ngx.req.get_uri_args(8).image
  if arg == nil or arg == true or arg == "" then return nil end
  if type(arg) ~= "string" or #arg > 255 or not arg:match("^[%w][%w._/%-]*:[%w_][%w._%-]*$") then
    return nil, "?image= must be NAME:TAG, e.g. pht/train:latest"
  end
  return arg
end

local function train_request(fn)
  if ngx.req.get_method() ~= "POST" then
    return send_error(405, "POST the train as the request body", { Allow = "POST" })
  end
  local station, serr = station_of_request()
  if not station then return send_error(400, serr) end
  local image, ierr = image_of_request()
  if ierr then return send_error(400, ierr) end
  local path, berr = body_file()
  if not path then return send_error(berr:match("^the gateway") and 500 or 400, berr) end
  return run_job(fn, path, {
    image = image,
    station = station.id,
    key_path = station.private_key,
    password = station.password,
    tmpdir = cfg.tmpdir,
    time_limit = cfg.job_time_limit,
    station_script = cfg.station_script,
    masters = cfg.masters,
  })
end

-- POST /trains/verify: would pre-run accept this train at the station?
function M.verify()
  return train_request("verify")
end

-- POST /trains/inspect: what the train is, and the station's verification.
function M.inspect()
  return train_request("inspect")
end

-- Anything else.
function M.not_found()
  return send_error(404, "no such endpoint: use GET /health, POST /trains/verify or POST /trains/inspect")
end

-- error_page target: nginx's own errors (413 body too large, 408 timeouts,
-- 400 malformed requests, ...) as JSON too.
local REASONS = {
  [400] = "malformed HTTP request",
  [408] = "the request took too long to arrive",
  [411] = "a Content-Length or chunked body is required",
  [413] = "the body is larger than this gateway accepts",
  [414] = "the request URI is too long",
  [494] = "the request headers are too large",
  [500] = "internal error",
  [502] = "internal error",
  [503] = "the gateway is unavailable",
  [504] = "the gateway timed out",
}

function M.error_page()
  local status = tonumber(ngx.var.status) or 500
  local message = REASONS[status] or "request failed"
  if status == 413 then
    message = message .. " (client_max_body_size " .. (ngx.var.pht_max_body or "?") .. ")"
  end
  return send_error(status, message)
end

return M
