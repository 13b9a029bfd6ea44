-- What the verbs of the `pht` command share beyond their options: the exit
-- codes, messages on stderr, and running a stock workflow (pht.stock) with
-- the station's --script files applied.
local options = require "pht.cli.options"
local progress = require "pht.progress"
local ref = require "pht.ref"

local M = {}

-- Exit codes (doc/cli.md).
M.EXIT = {
  ok = 0,
  rejected = 1,   -- a verification or policy step failed: the train is refused
  usage = 2,      -- the command line is wrong
  io = 3,         -- an image, key or file could not be read or written
  train = 4,      -- pht run: the train ran and exited with a status other than 0
  internal = 70,  -- a bug (a Lua error in libpht or in a station script)
}
local EXIT = M.EXIT

M.env = options.env

-- The report of this command for --json (pht.cli.main prints it): the
-- steps a workflow ran with their outcomes, what was written, the messages.
-- nil when --json was not given.
M.report = nil

-- Start a report for verb (--json).
function M.start_report(verb)
  local array = { __jsontype = "array" } -- [] in the JSON even when empty
  M.report = { verb = verb, steps = setmetatable({}, array), messages = setmetatable({}, array) }
  return M.report
end

-- "prog: message" on stderr (and into the --json report). Once a signal
-- came, what failed because of it is not reported: pht.cli says once that
-- the verb was interrupted.
function M.say(prog, fmt, ...)
  if require("pht").interrupted() then return end
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  if M.report then table.insert(M.report.messages, msg) end
  io.stderr:write(prog, ": ", msg, "\n")
end
local say = M.say

-- An IMAGE argument as a reference, or nil and why not (pht.ref.from_argument).
M.image_ref = ref.from_argument

-- The paragraph of --help saying what IMAGE may be.
M.image_help = ref.argument_help

-- The references of IMAGE arguments: t maps a key to an argument (nil
-- allowed); returns key -> reference, or nil and the message for a usage
-- error naming the first argument that is no reference.
function M.image_refs(t)
  local out = {}
  for k, s in pairs(t) do
    if s ~= nil then
      local r, err = M.image_ref(s)
      if not r then return nil, err end
      out[k] = r
    end
  end
  return out
end

-- clear (optional) removes a progress line before a message is written.
local function make_logger(prog, opts, clear)
  local level = opts.quiet and 0 or (opts.verbose and 2 or 1)
  return function(lvl, msg)
    if lvl == "warn" or (lvl == "info" and level >= 1) or (lvl == "debug" and level >= 2) then
      if clear then clear() end
      say(prog, "%s", msg)
    end
  end
end

-- The exit status for an interrupted run: 128 + the signal's number.
function M.interrupt_exit()
  local _, signo = require("pht").interrupted()
  return 128 + (signo or 2)
end

-- The progress renderer of --progress (pht.progress.renderer): the
-- function and its clear(); nothing for none, and for auto with --quiet or
-- without a terminal; nil, nil, message for a mode it does not know.
function M.progress_renderer(prog, opts)
  local mode = opts.progress or "auto"
  if mode == "auto" and opts.quiet then return nil end
  local render, clear = progress.renderer(mode, { prefix = prog })
  if not render and type(clear) == "string" then return nil, nil, clear end
  return render, clear
end

local function exit_for(failure)
  if failure.signal then return M.interrupt_exit() end
  if failure.code == "EINTERNAL" then return EXIT.internal end
  if failure.kind == "io" or failure.kind == "write" then return EXIT.io end
  return EXIT.rejected
end
-- The exit code for a workflow's failure (pht.workflow's failure object).
M.exit_for = exit_for

-- Load stock workflow `name`, build the context from `ctx_options`, apply
-- the --script files, run, report. Returns the exit code and the context.
function M.run_workflow(prog, name, opts, ctx_options)
  local workflow = require "pht.workflow"
  local render, clear, perr = M.progress_renderer(prog, opts)
  if perr then say(prog, "%s", perr) return EXIT.usage end
  -- JSON lines are for software: the step lines and the closing message
  -- stay out of them (as with -q); warnings and errors do not.
  if opts.progress == "json" then opts.quiet = true end
  local wf, err = require("pht.stock").load(name)
  if not wf then say(prog, "%s", err) return EXIT.internal end
  ctx_options.progress = render
  local ctx = workflow.context({ options = ctx_options, logger = make_logger(prog, opts, clear),
    program = prog })
  ctx.progress = function(c, i, n, step)
    c:log("info", string.format("[%d/%d] %s", i, n, step.name))
  end
  -- A workflow that runs others (scripts/run.lua) gets them customised by
  -- the same scripts.
  ctx.load_workflow = function(inner_name)
    local inner, lerr = require("pht.stock").load(inner_name)
    if not inner then return nil, lerr end
    for _, script in ipairs(opts.script or {}) do
      local ok, serr = workflow.customise(inner, script, ctx)
      if not ok then return nil, serr end
    end
    return inner
  end
  local report = M.report
  if report then
    wf:after(function(_, step, outcome)
      table.insert(report.steps, { name = step.name, status = outcome.status, message = outcome.message,
        seconds = outcome.seconds })
    end)
  end
  for _, script in ipairs(opts.script or {}) do
    local ok, serr = workflow.customise(wf, script, ctx)
    if not ok then
      ctx:cleanup() -- what the script made (a temporary directory) goes
      say(prog, "%s", serr)
      return EXIT.usage
    end
  end
  local ok, failure = wf:run(ctx)
  if report then
    report.workflow = name
    report.image = ctx.written
    if failure then report.failed_step = failure.step; report.error = tostring(failure) end
  end
  if not ok then
    -- an interruption is reported once, by pht.cli, after every cleanup
    if failure.signal then M.interrupted_step = failure.step
    else say(prog, "%s", tostring(failure)) end
    return exit_for(failure), ctx
  end
  return EXIT.ok, ctx
end

-- The registry options of the registry group (pht.open_image's names), or
-- nil and the usage message.
function M.registry_options(opts)
  local tv = opts["tls-verify"]
  if tv ~= nil and tv ~= "true" and tv ~= "false" then
    return nil, "--tls-verify takes true or false, not " .. tostring(tv)
  end
  return { creds = opts.creds, auth_file = opts.authfile, cert_dir = opts["cert-dir"],
    tls_verify = tv ~= "false", platform = opts.platform }
end

-- What to tell an operator whose encrypted key came without a password:
-- the variable the password is read from, and the option that names it.
function M.password_hint(var)
  return ("put its password in $%s, or name the variable holding it with --password-env"):format(var)
end

-- The references of the --master options (as IMAGE arguments: a bare
-- sha256:HEX is an image id in the Docker engine), or nil and the usage
-- message.
function M.master_refs(opts)
  local out = {}
  for _, s in ipairs(opts.master or {}) do
    local r, err = M.image_ref(s)
    if not r then return nil, "--master: " .. tostring(err) end
    out[#out + 1] = r
  end
  return out
end

-- The station's workflow options (pre-run, post-run) from the station
-- group's options and IMAGE, or nil and the usage message.
function M.station_options(opts, image)
  if not opts.station then return nil, "no station id: give --station or set STATION_ID" end
  if not opts.key then return nil, "no private key: give --key or set PRIVATE_KEY_PATH" end
  local refs, err = M.image_refs({ image = image, output = opts.output, base = opts.base })
  if not refs then return nil, err end
  local registry, rerr = M.registry_options(opts)
  if not registry then return nil, rerr end
  local masters, merr = M.master_refs(opts)
  if not masters then return nil, merr end
  return { masters = masters, station = opts.station, key_path = opts.key, password = M.env(opts["password-env"]),
    password_hint = M.password_hint(opts["password-env"]),
    image = refs.image, output = refs.output, base = refs.base, tmpdir = opts.tmpdir,
    registry = registry, docker_timeout = opts.timeout }
end

-- Run a station's workflow and report where it wrote.
function M.run_station(prog, opts, ctx_options, name, done)
  local code, ctx = M.run_workflow(prog, name, opts, ctx_options)
  if code == EXIT.ok and not opts.quiet then
    say(prog, "station %s %s into %s (stop %d of %d)%s", tostring(ctx.stop.station), done.what,
      ctx.written, ctx.pos, #ctx.stops, done.note or "")
  end
  return code
end

return M
