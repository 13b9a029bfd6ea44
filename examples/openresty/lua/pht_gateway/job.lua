-- The gateway's CPU-heavy work, run by ngx.run_worker_thread on the
-- thread pool named in the configuration. Each call runs in one of the pool's
-- own Lua VMs (not the request's), so only plain values come in and go out:
-- a file path and an options table in; an HTTP status, a JSON text and a
-- detail for the error log out. Nothing here may use the ngx API; `pht` is
-- loaded once per VM and keeps no C globals, so many VMs use it at once.
local pht = require "pht"
local verify = require "pht.verify"

local M = {}

-- status, JSON text of value, detail for the gateway's error log (or nil).
local function json(status, value, detail)
  local text, err = pht.json_encode(value)
  if not text then
    return 500, '{"error":"cannot encode the report as JSON"}', "json_encode: " .. tostring(err)
  end
  return status, text, detail
end

-- The HTTP status for a verification report: 200 when the train verifies
-- for the station, 422 when it does not (the report says at which step),
-- 400 when the body is no image at all, 503 when the run took too long, 500
-- only for the gateway's own faults (its key, a bug in a step).
local function status_of(report)
  if report.ok then return 200 end
  if report.timed_out then return 503 end
  local step = report.failed_step
  if step == "open_image" then return 400 end
  if step == "load_key" or report.code == "EINTERNAL" then return 500 end
  return 422
end

-- Messages name the file nginx wrote the body into; say "the request body"
-- instead, so no path of the gateway's leaks into a response.
local function plain_find_replace(s, what, with)
  local out, pos = {}, 1
  while true do
    local i, j = s:find(what, pos, true)
    if not i then break end
    out[#out + 1] = s:sub(pos, i - 1)
    out[#out + 1] = with
    pos = j + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

local function hide_path(msg, path)
  if type(msg) ~= "string" then return msg end
  msg = plain_find_replace(msg, "docker-archive:" .. path, "the request body")
  msg = plain_find_replace(msg, path, "the request body")
  msg = plain_find_replace(msg, "the request body: the request body: ", "the request body: ")
  msg = plain_find_replace(msg, "the request body: the request body: ", "the request body: ")
  -- The library's hint names its own reference syntax; a client names the
  -- image in the query string.
  return (msg:gsub("name one as docker%-archive:PATH:NAME:TAG", "name one with ?image=NAME:TAG"))
end

-- The same over every string of a report.
local function scrub(value, path)
  if type(value) == "string" then return hide_path(value, path) end
  if type(value) == "table" then
    for k, v in pairs(value) do value[k] = scrub(v, path) end
  end
  return value
end

local function step_named(report, name)
  for _, s in ipairs(report.steps) do
    if s.name == name then return s end
  end
  return nil
end

-- Run the verification; returns status, body table, detail for the log.
-- The reference of the body's image: the archive's only image, or the one
-- the request named (?image=NAME:TAG).
local function ref_of(path, opts)
  if opts.image then return "docker-archive:" .. path .. ":" .. opts.image end
  return "docker-archive:" .. path
end

local function verification(path, opts)
  local report, err = verify.train(ref_of(path, opts), {
    station = opts.station,
    key_path = opts.key_path,
    password = opts.password,
    tmpdir = opts.tmpdir,
    time_limit = opts.time_limit,
    station_script = opts.station_script,
    masters = opts.masters,
  })
  -- Handles closed by the run's cleanup leave garbage behind in this VM;
  -- collect it now rather than whenever the next request comes.
  collectgarbage()
  if not report then
    return 500, { error = "the gateway cannot build the verification workflow" }, err
  end

  scrub(report, path)

  local status = status_of(report)
  local body = {
    station = report.station,
    verified = report.ok,
    failed_step = report.failed_step,
    steps = report.steps,
    not_written = report.not_written,
  }
  local bad = report.failed_step and step_named(report, report.failed_step)
  if status == 400 then
    body.error = "the body is not a docker-archive image: " .. tostring(bad and bad.message)
  elseif status == 500 then
    -- The station's key and the gateway's own faults are the operator's
    -- business: the error log gets the message, the client a generic one.
    body.error = "the gateway could not run step " .. tostring(report.failed_step) .. "; see its error log"
    if bad then bad.message = "see the gateway's error log" end
    return status, body, report.message
  elseif status == 503 then
    body.error = "verification took longer than the gateway's limit of " .. tostring(opts.time_limit) .. " s"
  elseif status == 422 then
    body.error = report.message
  end
  return status, body
end

-- Worker start: load the stock workflow (and with it pht, the scripts and the
-- inspect code) in this pool VM, so the memory a VM needs is taken before the
-- first request, not during it. Returns like a request job.
function M.warm()
  local wf, err = verify.workflow({})
  pcall(require, "pht.inspect")
  -- One round of each primitive a verification uses, so OpenSSL fetches and
  -- caches its algorithms (RSA, PSS, OAEP, AES, SHA-512) now. The key is
  -- made for this purpose and dropped; no configured key is touched here.
  local key = pht.generate_key(2048)
  if key then
    local d = pht.sha512("warm")
    key:verify("warm", key:sign("warm") or "")
    key:verify_digest(d, key:sign_digest(d) or "")
    local sym = pht.new_symkey()
    local wrapped = key:wrap(sym)
    if wrapped then
      local again = key:unwrap(wrapped)
      if again then again:close() end
    end
    sym:decrypt(sym:encrypt(d))
    sym:close()
    key:close()
  end
  collectgarbage()
  if not wf then return 500, '{"warm":false}', "warm-up: " .. tostring(err) end
  return 200, '{"warm":true}', nil
end

-- POST /trains/verify: would pre-run accept the train in `path` (the file
-- nginx streamed the body into) at opts.station?
function M.verify(path, opts)
  local status, body, detail = verification(path, opts)
  body.libpht = pht.version
  return json(status, body, detail)
end

-- POST /trains/inspect: what the train is (pht.inspect, when the module
-- has it: route, whose turn, the signatures that verify with the public keys
-- the train carries) and what verifies for opts.station. 200 whatever the
-- verdict; 400 when the body is no image.
function M.inspect(path, opts)
  local body = { station = opts.station, libpht = pht.version }
  local have_inspect, inspect = pcall(require, "pht.inspect")
  if have_inspect then
    local train, err = inspect.image(ref_of(path, opts), opts.tmpdir, nil, nil, opts.masters)
    collectgarbage()
    if not train then
      return json(400, { error = "the body is not a train (a docker-archive image holding "
        .. "/opt/train_config.json): " .. hide_path(tostring(err), path),
        station = opts.station, libpht = pht.version })
    end
    train.image = nil -- the path of the body's file: nothing the client needs
    body.train = scrub(train, path)
  end
  local status, report, detail = verification(path, opts)
  if status == 400 or status >= 500 then
    report.libpht = pht.version
    return json(status, report, detail)
  end
  body.verification = report
  return json(200, body)
end

return M
