-- Progress of the long steps (doc/workflow.md, "Progress"): the byte
-- counter a step feeds, and the renderers that show its events on a
-- terminal, in a log or as JSON lines. A workflow emits events through
-- ctx.options.progress (pht.workflow's ctx:count_bytes); the pht command
-- picks a renderer with --progress; a station's Lua or the gateway passes
-- a function of its own.
--
-- An event is a table of plain values:
--   workflow  the workflow's name ("post-run"), when the counter knows it
--   step      the step's name ("write_image")
--   done      bytes done so far (never decreases within a step)
--   total     bytes the step expects, or nil when it cannot know (an
--             estimate grows to done when done passes it)
--   elapsed   seconds since the step's counter started (monotonic clock)
--   rate      bytes per second so far (0 at the start)
--   eta       seconds left at that rate, or nil without total or rate
--   final     true on the last event of the step, which always comes
--   status    on the final event: "ok", "skipped" or "failed"
local pht = require "pht"

local M = {}

-- The values of --progress.
M.MODES = { "auto", "plain", "json", "none" }

-- Seconds between two events of one counter (the final event comes anyway):
-- a terminal line is redrawn at most ten times a second.
M.INTERVAL = 0.1

-- Columns of the terminal line at most.
M.WIDTH = 79

-- Seconds between two lines of the plain renderer.
M.PLAIN_INTERVAL = 5

local fmt = string.format

-- Counting ------------------------------------------------------------------------

-- A counter for step `step` expecting `total` bytes (nil: unknown) that
-- calls emit(event) at its start (done 0), at most every M.INTERVAL seconds
-- as bytes are added, and once at c.finish(status). Fields: c.add(n) adds n
-- bytes (the function a C loop or a Lua loop calls), c.expect(n) adds n to
-- the total, c.finish(status) ends it (a second call does nothing).
-- opts.clock (seconds, default pht.clock), opts.workflow (the name events carry).
function M.counter(emit, step, total, opts)
  opts = opts or {}
  local clock = opts.clock or pht.clock
  local t0 = clock()
  local last = t0
  local c = { step = step, done = 0, total = total, workflow = opts.workflow }

  local function event(now, final, status)
    -- A total that was an estimate grows to what was done.
    if c.total and c.done > c.total then c.total = c.done end
    local elapsed = now - t0
    local rate = elapsed > 0 and c.done / elapsed or 0
    local eta
    if c.total and rate > 0 then eta = math.max(c.total - c.done, 0) / rate end
    emit({ workflow = c.workflow, step = step, done = c.done, total = c.total, elapsed = elapsed,
      rate = rate, eta = eta, final = final, status = status })
  end

  function c.add(n)
    c.done = c.done + n
    local now = clock()
    if now - last >= M.INTERVAL then
      last = now
      event(now, nil)
    end
  end

  function c.expect(n)
    c.total = (c.total or 0) + n
  end

  function c.finish(status)
    if c.finished then return end
    c.finished = true
    event(clock(), true, status)
  end

  event(t0, nil)
  return c
end

-- Showing ------------------------------------------------------------------------

-- "12.3 MiB" for a number of bytes.
function M.bytes(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do
    n = n / 1024
    i = i + 1
  end
  if i == 1 then return fmt("%d B", n) end
  return fmt("%.1f %s", n, units[i])
end

-- "0:04", "12:30", "1:02:03" for a number of seconds.
function M.duration(s)
  s = math.floor(s + 0.5)
  local h, m = math.floor(s / 3600), math.floor(s / 60) % 60
  if h > 0 then return fmt("%d:%02d:%02d", h, m, s % 60) end
  return fmt("%d:%02d", m, s % 60)
end

-- One line of text for an event: "write_image 12.0 MiB / 30.0 MiB 40% 8.1 MiB/s 0:02 left".
function M.line(ev)
  local parts = { ev.step, M.bytes(ev.done) }
  if ev.total then
    parts[2] = parts[2] .. " / " .. M.bytes(ev.total)
    if ev.total > 0 then parts[#parts + 1] = fmt("%d%%", math.floor(100 * math.min(ev.done / ev.total, 1))) end
  end
  parts[#parts + 1] = M.bytes(ev.rate) .. "/s"
  if ev.final then
    parts[#parts + 1] = "in " .. M.duration(ev.elapsed)
  elseif ev.eta then
    parts[#parts + 1] = M.duration(ev.eta) .. " left"
  end
  return table.concat(parts, "  ")
end

-- The renderer for `mode` (M.MODES), writing to opts.stream (default
-- io.stderr): a function(event), and a function clear() that removes a
-- terminal line before other text is written. nil for "none", and for
-- "auto" when the stream is not a terminal (opts.terminal, default:
-- pht.isatty(2)); nil, message for an unknown mode.
--   auto on a terminal: one line redrawn in place ("\r"), cleared at the step's end;
--   plain: "PREFIX: LINE" every opts.interval (M.PLAIN_INTERVAL) seconds and at the end;
--   json: each event as one JSON object a line.
-- opts.prefix begins the plain lines ("pht post-run").
function M.renderer(mode, opts)
  opts = opts or {}
  local out = opts.stream or io.stderr
  local nothing = function() end
  if mode == "none" then return nil end
  if mode == "auto" then
    local terminal = opts.terminal
    if terminal == nil then terminal = pht.isatty(2) end
    if not terminal then return nil end
    local shown = false
    local function clear()
      if shown then
        out:write("\r\27[K")
        out:flush()
        shown = false
      end
    end
    return function(ev)
      if ev.final then
        clear()
      else
        -- Longer than a narrow terminal's line, it would wrap and "\r" would not redraw it.
        out:write("\r", M.line(ev):sub(1, M.WIDTH), "\27[K")
        out:flush()
        shown = true
      end
    end, clear
  end
  if mode == "plain" then
    local interval = opts.interval or M.PLAIN_INTERVAL
    local prefix = opts.prefix and (opts.prefix .. ": ") or ""
    local next_at = {}
    return function(ev)
      if ev.final or ev.elapsed >= (next_at[ev.step] or interval) then
        next_at[ev.step] = not ev.final and ev.elapsed + interval or nil
        out:write(prefix, M.line(ev), "\n")
        out:flush()
      end
    end, nothing
  end
  if mode == "json" then
    return function(ev)
      local o = {}
      for k, v in pairs(ev) do o[k] = v end
      -- Milliseconds and whole bytes a second are all a reader needs.
      o.elapsed = math.floor(ev.elapsed * 1000 + 0.5) / 1000
      o.rate = math.floor(ev.rate + 0.5)
      if ev.eta then o.eta = math.floor(ev.eta * 1000 + 0.5) / 1000 end
      local text = assert(pht.json_encode(o))
      out:write(text, "\n")
      out:flush()
    end, nothing
  end
  return nil, fmt("--progress takes %s, not %s", table.concat(M.MODES, ", "), tostring(mode))
end

return M
