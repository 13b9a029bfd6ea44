-- The `pht` command line (doc/cli.md). cli/main.c calls main(args, host)
-- and exits with its return value; host holds what only the binary knows
-- (scripts_dir, and hold_signals, called once the verb has unwound). Each
-- verb is a module of its own under pht/cli/ (pre_run.lua, post_run.lua,
-- run.lua, inspect.lua, build.lua, decrypt_results.lua, keygen.lua) holding
-- its option table, from which pht.cli.options parses the command line and
-- writes --help.
local options = require "pht.cli.options"
local runner = require "pht.cli.runner"

local M = {}

M.EXIT = runner.EXIT
local EXIT = M.EXIT
M.image_ref = runner.image_ref
M.parse = options.parse

local ORDER = { "pre-run", "post-run", "run", "inspect", "build", "decrypt-results", "keygen" }
M.ORDER = ORDER

-- Verb name -> verb (see pht.cli.options for its fields).
local VERBS = {}
for _, name in ipairs(ORDER) do
  VERBS[name] = require("pht.cli." .. name:gsub("%-", "_"))
end
M.VERBS = VERBS

local function usage_text()
  local lines = {
    "Usage: pht VERB [options]   (pht VERB --help for one verb)",
    "",
    "The Personal Health Train protocol: verify, decrypt, sign and encrypt trains.",
    "",
    "Verbs:",
  }
  for _, name in ipairs(ORDER) do
    lines[#lines + 1] = string.format("  %-16s %s", name, VERBS[name].summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = runner.image_help()
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Stations: pht run IMAGE, or pht pre-run IMAGE; run the train; pht post-run IMAGE."
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Options:"
  lines[#lines + 1] = "  -h, --help   this text"
  lines[#lines + 1] = "  --version    print libpht's version"
  lines[#lines + 1] = ""
  lines[#lines + 1] = options.paragraphs("Exit status: 0 ok, 1 the train was rejected (the message names the "
    .. "step), 2 usage error, 3 an image, key or file could not be read or written, 4 the train ran and "
    .. "failed (pht run), 70 internal error, 130, 143, 129 stopped by SIGINT, SIGTERM, SIGHUP (temporary "
    .. "files and partial output removed).")
  return table.concat(lines, "\n") .. "\n"
end

-- The --help text of `verb` (a name such as "pre-run"), or the command's
-- own usage when verb is nil; nil for a verb that does not exist.
function M.help(verb)
  if verb == nil then return usage_text() end
  local v = VERBS[verb]
  return v and options.help(v, runner.image_help()) or nil
end

function M.main(args, host)
  args = args or {}
  local verb = args[1]
  if verb == nil then
    io.stderr:write(usage_text())
    return EXIT.usage
  end
  if verb == "-h" or verb == "--help" or verb == "help" then
    io.stdout:write(M.help(args[2]) or usage_text())
    return EXIT.ok
  end
  if verb == "--version" or verb == "version" then
    io.stdout:write("pht (libpht) ", require("pht").version, "\n")
    return EXIT.ok
  end
  local v = VERBS[verb]
  if not v then
    runner.say("pht", "unknown verb %s (see pht --help)", verb)
    return EXIT.usage
  end
  local prog = "pht " .. verb
  local rest, json = {}, false
  for i = 2, #args do
    rest[#rest + 1] = args[i]
    if args[i] == "--json" and v.options.json then json = true end
    if args[i] == "--" then break end
  end
  local report = json and runner.start_report(verb) or nil
  local code = M.run_verb(v, prog, rest, host)
  runner.report = nil
  -- --json: one object on stdout, whatever happened, unless the verb
  -- printed its own (inspect's report).
  if report and not report.printed then
    local out = { verb = verb, ok = code == EXIT.ok, exit_code = code, steps = report.steps,
      workflow = report.workflow, image = report.image, failed_step = report.failed_step,
      error = report.error or (code ~= EXIT.ok and report.messages[#report.messages] or nil),
      messages = report.messages }
    for k, val in pairs(report.extra or {}) do out[k] = val end
    io.stdout:write(assert(require("pht").json_encode(out, true)), "\n")
  end
  return code
end

-- Parse the words after the verb and run it; the exit code.
function M.run_verb(v, prog, rest, host)
  local opts, pos = options.parse(v, rest)
  if not opts then
    runner.say(prog, "%s (see %s --help)", pos, prog)
    return EXIT.usage
  end
  if opts.help then
    if runner.report then runner.report.printed = true end
    io.stdout:write(M.help(v.name))
    return EXIT.ok
  end
  runner.interrupted_step = nil
  local ok, code = xpcall(function() return v.run(host, prog, opts, pos) end, debug.traceback)
  -- from here a signal no longer stops anything: the pht binary blocks them
  -- so one sent now cannot end the finished run without a word
  if host and host.hold_signals then host.hold_signals() end
  local signal = require("pht").interrupted()
  if signal then
    -- the verb has unwound: its temporary files and partial outputs are gone
    local where = runner.interrupted_step and (" during " .. runner.interrupted_step) or ""
    if ok and code == EXIT.ok then where = " after its output was written" end
    io.stderr:write(string.format("%s: interrupted%s (%s); temporary files removed\n", prog, where, signal))
    return runner.interrupt_exit()
  end
  if not ok then
    runner.say(prog, "internal error: %s", tostring(code))
    return EXIT.internal
  end
  return code
end

return M
