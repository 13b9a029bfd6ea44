-- The workflow runner: a named list of steps run in order over one context.
--
-- A workflow (pre-run, post-run, build, ...) is built by a stock script in
-- scripts/ and then handed to a station's own script, which can insert,
-- replace, remove or wrap steps by name and add hooks, without copying the
-- stock script. See doc/workflow.md.
--
-- A step is a function(ctx, step) that returns
--   * anything but nil/false: done;
--   * nil (or false), message[, code]: failed, the workflow stops;
--   * workflow.skip(reason): not applicable here (e.g. no earlier results).
-- A step may also raise: workflow.fail(message[, code]) for an expected
-- failure, or any Lua error (reported with its position, as a bug).
--
-- A step flagged `finishes = true` completes what the write before it began
-- (removing what the new image replaces): after a signal it still runs, with
-- the signal held back until it is done. Steps flagged `writes = true`
-- change the outside world (the image). They must come last: the runner refuses a workflow in which a non-writing step
-- follows a writing one, so nothing is written unless every check passed.
local M = {}

local Workflow = {}
Workflow.__index = Workflow

-- Sentinels ------------------------------------------------------------------

local SKIP = {}
local FAIL = {}

-- Returned by a step that does not apply; `reason` is shown in the log.
function M.skip(reason)
  return setmetatable({ reason = reason }, SKIP)
end

local function is_skip(v)
  return type(v) == "table" and getmetatable(v) == SKIP
end

-- Raise an expected failure from inside a step (or a helper it calls).
function M.fail(message, code)
  error(setmetatable({ message = tostring(message), code = code }, FAIL), 0)
end

-- A failure: which workflow, which step, why. tostring() gives the one-line
-- message operators see.
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f)
  if f.signal then
    return string.format("%s interrupted %s (%s)", f.workflow,
      f.step and ("during " .. f.step) or "before its first step", f.signal)
  end
  if f.step then
    return string.format("%s failed at step %s: %s", f.workflow, f.step, f.message)
  end
  return string.format("%s failed: %s", f.workflow, f.message)
end

local function new_failure(wf, step, message, code)
  return setmetatable({
    workflow = wf.name,
    step = step and step.name or nil,
    kind = step and step.kind or nil,
    message = message,
    code = code,
  }, Failure)
end

-- The signal that interrupted the process (pht.catch_signals), or nil. The
-- C module is optional here: a workflow runs without it in plain Lua tests.
local function interrupted()
  local ok, pht = pcall(require, "pht")
  if not ok or type(pht) ~= "table" or not pht.interrupted then return nil end
  return pht.interrupted()
end
M.interrupted = interrupted

-- An interruption: a failure whose code is "EINTR" and whose `signal` names
-- the signal; `step` is the step that was running or about to run.
local function interruption(wf, step, signal)
  local f = new_failure(wf, step, "interrupted (" .. signal .. ")", "EINTR")
  f.signal = signal
  return f
end

-- Building -------------------------------------------------------------------

local KINDS = { io = true, verify = true, policy = true, crypto = true, write = true, info = true }

local function check_name(name)
  if type(name) ~= "string" or not name:match("^[%a_][%w_%-%.]*$") then
    error("workflow: a step name must be an identifier-like string, got " .. tostring(name), 3)
  end
end

-- Normalise the ways a step can be given:
--   name, fn[, opts]      or      { name = ..., run = fn, kind = ..., writes = ..., doc = ... }
local function make_step(name, fn, opts)
  local step
  if type(name) == "table" then
    step = {}
    for k, v in pairs(name) do step[k] = v end
  else
    step = {}
    for k, v in pairs(opts or {}) do step[k] = v end
    step.name, step.run = name, fn
  end
  check_name(step.name)
  if type(step.run) ~= "function" then
    error("workflow: step " .. step.name .. " needs a function", 3)
  end
  step.kind = step.kind or (step.writes and "write" or "policy")
  if not KINDS[step.kind] then
    error("workflow: step " .. step.name .. " has an unknown kind " .. tostring(step.kind), 3)
  end
  return step
end

-- A new, empty workflow. `name` appears in every failure message.
function M.new(name, steps)
  local wf = setmetatable({
    name = name,
    steps = {},
    hooks = { before = {}, after = {}, failure = {}, finish = {} },
  }, Workflow)
  for _, s in ipairs(steps or {}) do wf:add(s) end
  return wf
end

function Workflow:index(name)
  for i, s in ipairs(self.steps) do
    if s.name == name then return i end
  end
  return nil
end

local function must_index(self, name, level)
  local i = self:index(name)
  if not i then
    error(string.format("workflow %s has no step named %s (steps: %s)", self.name,
      tostring(name), table.concat(self:names(), ", ")), level or 3)
  end
  return i
end

local function insert_at(self, pos, step)
  if self:index(step.name) then
    error(string.format("workflow %s already has a step named %s", self.name, step.name), 3)
  end
  table.insert(self.steps, pos, step)
  return self
end

-- The step table of that name, or nil.
function Workflow:step(name)
  local i = self:index(name)
  return i and self.steps[i] or nil
end

-- Step names in run order.
function Workflow:names()
  local out = {}
  for i, s in ipairs(self.steps) do out[i] = s.name end
  return out
end

-- Append a step: wf:add(name, fn, opts) or wf:add{name=, run=, kind=, writes=, doc=}.
function Workflow:add(name, fn, opts)
  return insert_at(self, #self.steps + 1, make_step(name, fn, opts))
end

function Workflow:insert_before(anchor, name, fn, opts)
  local i = must_index(self, anchor)
  return insert_at(self, i, make_step(name, fn, opts))
end

function Workflow:insert_after(anchor, name, fn, opts)
  local i = must_index(self, anchor)
  return insert_at(self, i + 1, make_step(name, fn, opts))
end

-- Replace a step's function, keeping its place, kind and flags unless opts
-- says otherwise.
function Workflow:replace(name, fn, opts)
  local i = must_index(self, name)
  local old = self.steps[i]
  local step = {}
  for k, v in pairs(old) do step[k] = v end
  for k, v in pairs(opts or {}) do step[k] = v end
  step.name, step.run = name, fn
  self.steps[i] = make_step(step)
  return self
end

function Workflow:remove(name)
  table.remove(self.steps, must_index(self, name))
  return self
end

-- Wrap a step: wrapper(ctx, original, step) runs instead and may call
-- original(ctx) (the previous function) before, after or not at all.
function Workflow:wrap(name, wrapper)
  local step = self.steps[must_index(self, name)]
  local original = step.run
  step.run = function(ctx, s)
    return wrapper(ctx, function(c) return original(c or ctx, s) end, s)
  end
  return self
end

-- A station policy: a check step placed just before the first step that
-- writes, so it sees everything the verification steps established.
function Workflow:check(name, fn, opts)
  opts = opts or {}
  opts.kind = opts.kind or "policy"
  for i, s in ipairs(self.steps) do
    if s.writes then return insert_at(self, i, make_step(name, fn, opts)) end
  end
  return self:add(name, fn, opts)
end

-- Hooks: before(ctx, step) may veto the step by returning nil, message;
-- after(ctx, step, outcome) sees every outcome ({status = "ok" | "skipped" |
-- "failed", message =, seconds =}); on_failure(ctx, failure) once when the
-- workflow fails; on_finish(ctx, ok, failure) always, last.
function Workflow:before(fn) table.insert(self.hooks.before, fn) return self end
function Workflow:after(fn) table.insert(self.hooks.after, fn) return self end
function Workflow:on_failure(fn) table.insert(self.hooks.failure, fn) return self end
function Workflow:on_finish(fn) table.insert(self.hooks.finish, fn) return self end

-- Nothing that only checks may run after a step that writes.
function Workflow:validate()
  local writer
  for _, s in ipairs(self.steps) do
    if s.writes then
      writer = writer or s.name
    elseif writer then
      return nil, string.format("workflow %s: step %s comes after %s, which writes; "
        .. "checks must come before the write", self.name, s.name, writer)
    end
  end
  return true
end

-- Running --------------------------------------------------------------------

-- Wall-clock seconds (the monotonic clock of pht.clock) for a step's
-- `seconds`; os.clock, which counts the CPU time of every thread, only where
-- the C module is absent (plain Lua tests).
local wall
local function clock()
  if wall == nil then
    local ok, pht = pcall(require, "pht")
    wall = ok and type(pht) == "table" and pht.clock or os.clock
  end
  return wall()
end

-- Turn what pcall gave back into ok | "skipped", message, code.
local function outcome_of(pok, a, b, c)
  if not pok then
    if type(a) == "table" and getmetatable(a) == FAIL then
      return "failed", a.message, a.code
    end
    return "failed", tostring(a), "EINTERNAL"
  end
  if is_skip(a) then return "skipped", a.reason end
  if a == nil or a == false then
    return "failed", b ~= nil and tostring(b) or "the step reported failure without a reason", c
  end
  return "ok"
end

local function run_hooks(list, ...)
  for _, h in ipairs(list) do
    local pok, r, msg = pcall(h, ...)
    if not pok then
      if type(r) == "table" and getmetatable(r) == FAIL then return nil, r.message end
      return nil, tostring(r)
    end
    if r == false or (r == nil and msg ~= nil) then return nil, tostring(msg or "refused") end
  end
  return true
end

local function quiet_hooks(ctx, list, ...)
  for _, h in ipairs(list) do
    local pok, err = pcall(h, ...)
    if not pok and ctx.log then ctx:log("warn", "hook failed: %s", tostring(err)) end
  end
end

-- The step loop of Workflow:run: the failure, or nil when every step passed.
local function run_steps(self, ctx)
  local failure
  local total = #self.steps
  local held -- the signal number held back while a `finishes` step runs
  for i, step in ipairs(self.steps) do
    ctx.step = step.name
    -- step boundary: stop before the next step once a signal came, unless
    -- the step finishes what a write began (it runs with the signal held)
    local sig, signo = interrupted()
    if sig and not step.finishes then
      failure = interruption(self, step, sig)
      break
    end
    if sig then
      held = signo
      require("pht").clear_interrupt()
    end
    local t0 = clock()
    local status, message, code
    local hok, hmsg = run_hooks(self.hooks.before, ctx, step)
    if not hok then
      status, message, code = "failed", hmsg, "EPOLICY"
    else
      if ctx.progress then ctx:progress(i, total, step) end
      status, message, code = outcome_of(pcall(step.run, ctx, step))
    end
    -- The byte counter of the step (ctx:count_bytes) ends with it.
    local counter = rawget(ctx, "_counter")
    if counter then
      ctx._counter = nil
      counter.finish(status)
    end
    local outcome = { status = status, message = message, code = code, seconds = clock() - t0,
      index = i, total = total }
    if ctx.log then
      if status == "ok" then
        ctx:log("debug", "%s: ok", step.name)
      elseif status == "skipped" then
        ctx:log("info", "%s: skipped (%s)", step.name, tostring(message))
      end
    end
    local aok, amsg = run_hooks(self.hooks.after, ctx, step, outcome)
    if held then
      require("pht").interrupt(held)
      held = nil
    end
    if status == "failed" then
      -- whatever a step reports once a signal came (a C loop's EINTR, a
      -- read cut short) is the interruption
      sig = interrupted()
      failure = sig and interruption(self, step, sig) or new_failure(self, step, message, code)
      break
    end
    if not aok then
      failure = new_failure(self, step, "after-step hook: " .. amsg, "EPOLICY")
      break
    end
  end
  return failure
end

-- Run every step over ctx (a context from M.context). Returns true, or nil
-- and a failure object (fields workflow, step, kind, message, code;
-- tostring gives the operator's message). Cleanups always run. After a
-- signal (pht.catch_signals) the run stops at the next step boundary or
-- when the running step fails, with code "EINTR" and `signal` set.
function Workflow:run(ctx)
  ctx = ctx or M.context()
  ctx.workflow = self.name
  local ok, why = self:validate()
  if not ok then
    local f = new_failure(self, nil, why, "ECONFIG")
    if ctx.cleanup then ctx:cleanup() end
    return nil, f
  end

  -- The steps run protected, and so does everything around them (progress,
  -- logging, hooks): whatever raises, the cleanups below run before the
  -- error goes on.
  local pok, failure = pcall(run_steps, self, ctx)
  if not pok then
    ctx.step = nil
    if ctx.cleanup then ctx:cleanup() end
    error(failure, 0)
  end
  ctx.step = nil

  if failure then quiet_hooks(ctx, self.hooks.failure, ctx, failure) end
  quiet_hooks(ctx, self.hooks.finish, ctx, failure == nil, failure)
  if ctx.cleanup then ctx:cleanup() end
  if failure then return nil, failure end
  return true
end

-- Contexts -------------------------------------------------------------------

local Context = {}
Context.__index = Context
-- `local ctx <close> = workflow.context()` (Lua 5.4): a script that made a
-- temporary directory and then fails outside wf:run still removes it.
Context.__close = function(self) self:cleanup() end

-- A context: the table every step reads and fills (config, image, keys,
-- station, options, ...). `fields` are copied in. Methods: ctx:defer(fn),
-- ctx:tempdir(), ctx:log(level, fmt, ...), ctx:count_bytes(total), ctx:cleanup().
function M.context(fields)
  local ctx = setmetatable({ options = {}, _defer = {} }, Context)
  for k, v in pairs(fields or {}) do ctx[k] = v end
  return ctx
end

-- Run fn at cleanup (last registered runs first), whatever happened.
function Context:defer(fn)
  table.insert(self._defer, fn)
end

-- A private (0700) scratch directory, made on first use and removed with
-- everything in it at cleanup. Plaintext only ever goes here.
function Context:tempdir()
  if not self._tempdir then
    local fs = require "pht.fs"
    local dir, err = fs.mkdtemp(self.options.tmpdir)
    if not dir then M.fail("cannot make a private temporary directory: " .. tostring(err), "EIO") end
    self._tempdir = dir
    self:defer(function() fs.remove_tree(dir) end)
  end
  return self._tempdir
end

-- A byte counter for the running step, when the workflow's options carry
-- a progress callback (options.progress = function(event), events as
-- pht.progress describes them): returns add(n), the function to call with
-- each number of bytes moved (give it to a C call that takes a progress
-- function), or nil when nobody listens. `total` (optional) is the bytes the
-- step expects, or a function returning them (called only when someone
-- listens); a second call in the same step adds its total to the first and
-- returns the same function. The runner sends the final event when the
-- step ends. An error raised by the callback is logged once as a warning and
-- the step's later events are dropped; it never fails the step.
function Context:count_bytes(total)
  local listener = self.options and self.options.progress
  if type(listener) ~= "function" then return nil end
  if type(total) == "function" then total = total() end
  local c = self._counter
  if c and c.step == self.step then
    if total then c.expect(total) end
    return c.add
  end
  local broken = false
  local function emit(ev)
    if broken then return end
    local pok, err = pcall(listener, ev)
    if not pok then
      broken = true
      self:log("warn", "progress callback failed: %s", tostring(err))
    end
  end
  c = require("pht.progress").counter(emit, self.step or "?", total, { workflow = self.workflow })
  self._counter = c
  return c.add
end

-- Levels: "debug", "info", "warn". The default sink is set by the CLI; a
-- context made elsewhere logs nowhere.
function Context:log(level, fmt, ...)
  if self.logger then
    local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
    self.logger(level, msg, self)
  end
end

function Context:cleanup()
  local list = self._defer
  self._defer = {}
  for i = #list, 1, -1 do
    local pok, err = pcall(list[i], self)
    if not pok and self.logger then self.logger("warn", "cleanup failed: " .. tostring(err), self) end
  end
end

-- Load a station's own script and let it customise wf. The script returns a
-- function(wf, ctx) applied to every workflow, or a table whose fields named
-- after workflows (pre_run, post_run, build, decrypt_results, or any) hold
-- such functions. Returns true or nil, message.
function M.customise(wf, path, ctx)
  local chunk, err = loadfile(path)
  if not chunk then return nil, "cannot load station script " .. path .. ": " .. tostring(err) end
  local pok, spec = pcall(chunk)
  if not pok then return nil, "station script " .. path .. " failed: " .. tostring(spec) end
  local fns = {}
  if type(spec) == "function" then
    fns[1] = spec
  elseif type(spec) == "table" then
    local key = wf.name:gsub("%-", "_")
    if type(spec.any) == "function" then fns[#fns + 1] = spec.any end
    if type(spec[key]) == "function" then fns[#fns + 1] = spec[key] end
  else
    return nil, "station script " .. path .. " must return a function or a table of functions"
  end
  for _, fn in ipairs(fns) do
    local ok2, e2 = pcall(fn, wf, ctx)
    if not ok2 then
      local msg = type(e2) == "table" and getmetatable(e2) == FAIL and e2.message or tostring(e2)
      return nil, "station script " .. path .. " failed to customise " .. wf.name .. ": " .. msg
    end
  end
  local vok, verr = wf:validate()
  if not vok then return nil, "station script " .. path .. ": " .. verr end
  return true
end

return M
