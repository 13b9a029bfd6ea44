-- Verify a train for a station without writing anything: the stock pre-run
-- (scripts/pre_run.lua) with every step that writes removed, each step's
-- outcome collected in step order. Used where a train must be checked but
-- must stay as it is: the OpenResty gateway (examples/openresty/), and any
-- tool that asks "would pre-run accept this train here?".
--
--   local verify = require "pht.verify"
--   local report = verify.train("docker-archive:/tmp/train.tar", {
--     station = "station_1", key_path = "/etc/pht/station_1.pem",
--   })
--   report.ok, report.failed_step, report.steps[i].name / .status / .message
--
-- Everything in the report is a plain value (strings, numbers, booleans and
-- tables of them), so it crosses from an nginx worker thread's Lua VM to the
-- request's VM unchanged. No key or plaintext byte ever enters it.
local workflow = require "pht.workflow"
local stock = require "pht.stock"

local M = {}

-- The pre-run workflow as it would run at the station (the station's own
-- script applied, when given), minus the steps that write. Returns the
-- workflow and the names of the steps taken out, or nil, message.
function M.workflow(opts)
  opts = opts or {}
  local wf, err
  if opts.script then wf, err = stock.load_file(opts.script) else wf, err = stock.load("pre_run") end
  if not wf then return nil, err end
  if opts.station_script then
    local ok, cerr = workflow.customise(wf, opts.station_script, nil)
    if not ok then return nil, cerr end
  end
  local removed = {}
  for i = #wf.steps, 1, -1 do
    if wf.steps[i].writes then table.insert(removed, 1, table.remove(wf.steps, i).name) end
  end
  return wf, removed
end

-- Verify the train at image reference `ref` (e.g. "docker-archive:PATH") for
-- the station opts.station with its private key at opts.key_path (and
-- opts.password), temporary plaintext under opts.tmpdir (removed before this
-- returns); opts.masters: the station's master images (references), which
-- check_master compares the train against. opts.time_limit (seconds) stops the run between steps once
-- exceeded. Returns a report (see doc/gateway.md), or nil, message when the
-- workflow itself cannot be built.
--
-- report = { station, ok, failed_step, message, code, timed_out, not_written = {names},
--            steps = { {name, kind, status = "ok"|"skipped"|"failed"|"not_run", ok, message, code} } }
function M.train(ref, opts)
  opts = opts or {}
  local wf, removed = M.workflow(opts)
  if not wf then return nil, removed end

  local report = { station = opts.station ~= nil and tostring(opts.station) or nil,
    ok = false, steps = {}, not_written = removed }
  local by_name = {}
  for i, s in ipairs(wf.steps) do
    report.steps[i] = { name = s.name, kind = s.kind, status = "not_run", ok = false }
    by_name[s.name] = report.steps[i]
  end

  local deadline = opts.time_limit and (os.time() + opts.time_limit) or nil
  local timed_out = false
  if deadline then
    wf:before(function(_, step)
      if os.time() > deadline then
        timed_out = true
        return nil, string.format("time limit of %d s exceeded before step %s", opts.time_limit, step.name)
      end
      return true
    end)
  end
  wf:after(function(_, step, outcome)
    local r = by_name[step.name]
    r.status = outcome.status
    r.ok = outcome.status ~= "failed"
    r.message = outcome.message ~= nil and tostring(outcome.message) or nil
    r.code = outcome.code
    return true
  end)

  local ctx = workflow.context({
    options = {
      image = ref,
      station = opts.station,
      key_path = opts.key_path,
      password = opts.password,
      tmpdir = opts.tmpdir,
      masters = opts.masters,
    },
  })
  local ok, failure = wf:run(ctx)
  if ok then
    report.ok = true
  else
    report.failed_step = failure.step
    report.message = tostring(failure)
    report.code = failure.code
    report.timed_out = timed_out or nil
  end
  return report
end

return M
