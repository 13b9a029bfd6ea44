-- Station audit: append one JSON line per step and one per run to a log,
-- for every workflow (pre-run, post-run, ...), whatever the outcome.
--
--   pht pre-run IMAGE --script examples/stations/audit_log.lua
--
-- The log is $PHT_AUDIT_LOG (default ./pht-audit.jsonl). Each line is an
-- object: {"time", "workflow", "image", "station", "step", "status"
-- ("ok" | "skipped" | "failed"), "message", "seconds"}; the run's last line
-- has "event": "finish" and "ok". Messages name steps and reasons only:
-- libpht never puts keys or plaintext in them.
local pht = require "pht"

local function append(record)
  local path = os.getenv("PHT_AUDIT_LOG") or "pht-audit.jsonl"
  local f, err = io.open(path, "a")
  if not f then error("cannot open the audit log " .. path .. ": " .. tostring(err)) end
  f:write(assert(pht.json_encode(record)), "\n")
  f:close()
end

local function base(ctx)
  return {
    time = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    workflow = ctx.workflow,
    image = ctx.options.image,
    station = ctx.options.station,
  }
end

return function(wf)
  wf:after(function(ctx, step, outcome)
    local r = base(ctx)
    r.step, r.status, r.message = step.name, outcome.status, outcome.message
    r.seconds = math.floor(outcome.seconds * 1000 + 0.5) / 1000
    append(r)
  end)
  wf:on_finish(function(ctx, ok, failure)
    local r = base(ctx)
    r.event, r.ok = "finish", ok
    if failure then r.step, r.message = failure.step, failure.message end
    append(r)
  end)
end
