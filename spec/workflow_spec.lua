-- The workflow runner (lua/pht/workflow.lua), on steps made up for the test.
local helpers = require "helpers"
local workflow = require "pht.workflow"

-- A workflow whose steps record their names in ctx.trace.
local function recording(names, opts)
  opts = opts or {}
  local wf = workflow.new("test-run")
  for _, n in ipairs(names) do
    wf:add(n, function(ctx) table.insert(ctx.trace, n) return true end,
      { writes = opts.writes == n, kind = opts.writes == n and "write" or "verify" })
  end
  return wf
end

local function ctx()
  return workflow.context({ trace = {} })
end

describe("workflow runner", function()
  it("runs the steps in order over one context", function()
    local c = ctx()
    assert.is_true(recording({ "a", "b", "c" }):run(c))
    assert.same({ "a", "b", "c" }, c.trace)
  end)

  it("stops at a step that returns nil, message and names the step and the reason", function()
    local wf = recording({ "a", "c" })
    wf:insert_after("a", "b", function() return nil, "the digest differs", "EVERIFY" end)
    local c = ctx()
    local ok, f = wf:run(c)
    assert.is_nil(ok)
    assert.equal("b", f.step)
    assert.equal("EVERIFY", f.code)
    assert.equal("test-run failed at step b: the digest differs", tostring(f))
    assert.same({ "a" }, c.trace)
  end)

  it("turns a raised workflow.fail into a failure of that step", function()
    local wf = recording({ "a" })
    wf:add("boom", function() workflow.fail("key does not fit", "EKEY") end)
    local ok, f = wf:run(ctx())
    assert.is_nil(ok)
    assert.equal("boom", f.step)
    assert.equal("key does not fit", f.message)
    assert.equal("EKEY", f.code)
  end)

  it("turns a Lua error inside a step into a failure naming the step", function()
    local wf = workflow.new("t")
    wf:add("broken", function() local x = nil; return x.y end)
    local ok, f = wf:run(ctx())
    assert.is_nil(ok)
    assert.equal("broken", f.step)
    assert.matches("attempt to index", f.message)
  end)

  it("treats a step returning false as a failure", function()
    local wf = workflow.new("t")
    wf:add("no", function() return false end)
    local ok, f = wf:run(ctx())
    assert.is_nil(ok)
    assert.equal("no", f.step)
  end)

  it("records a skipped step and goes on", function()
    local wf = recording({ "b" })
    wf:insert_before("b", "a", function() return workflow.skip("first stop") end)
    local seen = {}
    wf:after(function(_, step, outcome) seen[step.name] = outcome.status .. ":" .. tostring(outcome.message) end)
    local c = ctx()
    assert.is_true(wf:run(c))
    assert.same({ "b" }, c.trace)
    assert.equal("skipped:first stop", seen.a)
    assert.equal("ok:nil", seen.b)
  end)

  it("inserts before and after a named step", function()
    local wf = recording({ "a", "c" })
    wf:insert_before("c", "b", function(c) table.insert(c.trace, "b") return true end)
    wf:insert_after("c", "d", function(c) table.insert(c.trace, "d") return true end)
    local c = ctx()
    assert.is_true(wf:run(c))
    assert.same({ "a", "b", "c", "d" }, c.trace)
  end)

  it("replaces a step in place, keeping its kind", function()
    local wf = recording({ "a", "b", "c" })
    wf:replace("b", function(c) table.insert(c.trace, "B") return true end)
    local c = ctx()
    assert.is_true(wf:run(c))
    assert.same({ "a", "B", "c" }, c.trace)
    assert.equal("verify", wf:step("b").kind)
  end)

  it("removes a step", function()
    local wf = recording({ "a", "b", "c" })
    wf:remove("b")
    local c = ctx()
    assert.is_true(wf:run(c))
    assert.same({ "a", "c" }, c.trace)
  end)

  it("wraps a step so the wrapper runs around the original", function()
    local wf = recording({ "a", "b" })
    wf:wrap("b", function(c, original)
      table.insert(c.trace, "before-b")
      local r = original(c)
      table.insert(c.trace, "after-b")
      return r
    end)
    local c = ctx()
    assert.is_true(wf:run(c))
    assert.same({ "a", "before-b", "b", "after-b" }, c.trace)
  end)

  it("lets a wrapper refuse without running the original", function()
    local wf = recording({ "a", "b" })
    wf:wrap("b", function() return nil, "not today" end)
    local c = ctx()
    local ok, f = wf:run(c)
    assert.is_nil(ok)
    assert.equal("b", f.step)
    assert.equal("not today", f.message)
    assert.same({ "a" }, c.trace)
  end)

  it("raises on a step name that does not exist, listing the steps", function()
    local wf = recording({ "a", "b" })
    assert.has_error(function() wf:insert_after("nope", "x", function() end) end,
      "workflow test-run has no step named nope (steps: a, b)")
  end)

  it("raises on a duplicate step name", function()
    local wf = recording({ "a" })
    assert.has_error(function() wf:add("a", function() end) end,
      "workflow test-run already has a step named a")
  end)

  it("places a policy check just before the first writing step", function()
    local wf = recording({ "a", "b", "write_image" }, { writes = "write_image" })
    wf:check("policy", function(c) table.insert(c.trace, "policy") return true end)
    assert.same({ "a", "b", "policy", "write_image" }, wf:names())
  end)

  it("refuses to run a check placed after the writing step", function()
    local wf = recording({ "a", "write_image" }, { writes = "write_image" })
    wf:add("late", function(c) table.insert(c.trace, "late") return true end)
    local c = ctx()
    local ok, f = wf:run(c)
    assert.is_nil(ok)
    assert.matches("step late comes after write_image, which writes", f.message)
    assert.same({}, c.trace)
  end)

  it("does not run the writing step when a check before it fails", function()
    local wf = recording({ "a", "write_image" }, { writes = "write_image" })
    wf:check("policy", function() return nil, "creator not allowed" end)
    local c = ctx()
    local ok, f = wf:run(c)
    assert.is_nil(ok)
    assert.equal("policy", f.step)
    assert.same({ "a" }, c.trace)
  end)

  it("lets a before-hook veto a step, failing at that step", function()
    local wf = recording({ "a", "b" })
    wf:before(function(_, step) if step.name == "b" then return nil, "station closed" end end)
    local c = ctx()
    local ok, f = wf:run(c)
    assert.is_nil(ok)
    assert.equal("b", f.step)
    assert.equal("station closed", f.message)
    assert.same({ "a" }, c.trace)
  end)

  it("calls after-hooks with every outcome, failure hooks once and finish hooks last", function()
    local wf = recording({ "a" })
    wf:add("b", function() return nil, "bad" end)
    local log = {}
    wf:after(function(_, step, o) table.insert(log, step.name .. "=" .. o.status) end)
    wf:on_failure(function(_, f) table.insert(log, "failure:" .. f.step) end)
    wf:on_finish(function(_, ok) table.insert(log, "finish:" .. tostring(ok)) end)
    assert.is_nil(wf:run(ctx()))
    assert.same({ "a=ok", "b=failed", "failure:b", "finish:false" }, log)
  end)

  it("runs deferred cleanups in reverse order whether the run succeeds or fails", function()
    for _, fail in ipairs({ false, true }) do
      local wf = workflow.new("t")
      local order = {}
      wf:add("one", function(c) c:defer(function() table.insert(order, "one") end) return true end)
      wf:add("two", function(c)
        c:defer(function() table.insert(order, "two") end)
        if fail then return nil, "fails" end
        return true
      end)
      wf:run(ctx())
      assert.same({ "two", "one" }, order)
    end
  end)

  it("gives steps a private temporary directory and removes it afterwards", function()
    local base = helpers.tmpdir()
    local wf = workflow.new("t")
    local seen
    wf:add("use", function(c)
      seen = c:tempdir()
      helpers.write(seen .. "/plain", "secret")
      return nil, "fail after writing plaintext"
    end)
    local c = workflow.context({ options = { tmpdir = base } })
    assert.is_nil(wf:run(c))
    assert.truthy(seen:find(base, 1, true) == 1)
    assert.is_false(helpers.sh("test -e " .. helpers.q(seen)))
  end)

  it("makes the temporary directory with mode 0700", function()
    local base = helpers.tmpdir()
    local wf = workflow.new("t")
    local mode
    wf:add("use", function(c)
      mode = helpers.run("stat -c %a " .. helpers.q(c:tempdir())):match("%d+")
      return true
    end)
    assert.is_true(wf:run(workflow.context({ options = { tmpdir = base } })))
    assert.equal("700", mode)
  end)

  it("removes the temporary directory when something around the steps raises (a progress callback)", function()
    local base = helpers.tmpdir()
    local wf = workflow.new("t")
    local seen
    wf:add("use", function(c)
      seen = c:tempdir()
      helpers.write(seen .. "/plain", "secret")
      return true
    end)
    wf:add("next", function() return true end)
    local c = workflow.context({ options = { tmpdir = base } })
    c.progress = function(_, i) if i == 2 then error("progress sink broke") end end
    local ok, err = pcall(wf.run, wf, c)
    assert.is_false(ok)
    assert.matches("progress sink broke", tostring(err))
    assert.is_false(helpers.sh("test -e " .. helpers.q(seen)))
    assert.equal("", helpers.run("ls -A " .. helpers.q(base)))
  end)

  it("stops at the next step once a signal is recorded, runs the cleanups, and says where", function()
    local pht = require "pht"
    local base = helpers.tmpdir()
    local wf = workflow.new("t")
    local seen, ran_second
    wf:add("first", function(c)
      seen = c:tempdir()
      pht.interrupt(15)
      return true
    end)
    wf:add("second", function() ran_second = true return true end)
    local ok, f = wf:run(workflow.context({ options = { tmpdir = base } }))
    pht.clear_interrupt()
    assert.is_nil(ok)
    assert.is_nil(ran_second)
    assert.equal("EINTR", f.code)
    assert.equal("SIGTERM", f.signal)
    assert.equal("second", f.step)
    assert.equal("t interrupted during second (SIGTERM)", tostring(f))
    assert.is_false(helpers.sh("test -e " .. helpers.q(seen)))
  end)

  it("still runs a step flagged finishes after a signal, with the signal held back, then stops", function()
    local pht = require "pht"
    local wf = workflow.new("t")
    local seen_in_finish, ran_after
    wf:add("write", function() pht.interrupt(2) return true end, { writes = true })
    wf:add("finish", function() seen_in_finish = pht.interrupted() or "none" return true end,
      { writes = true, finishes = true })
    wf:add("after", function() ran_after = true return true end, { writes = true })
    local ok, f = wf:run(workflow.context())
    local still = pht.interrupted()
    pht.clear_interrupt()
    assert.is_nil(ok)
    assert.equal("none", seen_in_finish)
    assert.is_nil(ran_after)
    assert.equal("after", f.step)
    assert.equal("SIGINT", still)
  end)

  it("removes a context's temporary directory when the context is closed (<close>, Lua 5.4)", function()
    if not _VERSION:match("5%.4") then return pending("to-be-closed variables are Lua 5.4") end
    local base = helpers.tmpdir()
    local seen
    local chunk = assert(load([[
      local workflow, base = ...
      local c <close> = workflow.context({ options = { tmpdir = base } })
      local dir = c:tempdir()
      error({ dir = dir })
    ]]))
    local ok, e = pcall(chunk, workflow, base)
    assert.is_false(ok)
    seen = e.dir
    assert.is_false(helpers.sh("test -e " .. helpers.q(seen)))
  end)
end)

describe("station scripts", function()
  it("customise a workflow through a returned function", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/s.lua", [[
      return function(wf)
        wf:insert_before("b", "mine", function(c) table.insert(c.trace, "mine") return true end)
      end]])
    local wf = recording({ "a", "b" })
    assert.is_true(workflow.customise(wf, dir .. "/s.lua"))
    local c = ctx()
    assert.is_true(wf:run(c))
    assert.same({ "a", "mine", "b" }, c.trace)
  end)

  it("customise only the workflow named in a returned table", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/s.lua", [[
      return {
        pre_run = function(wf) wf:remove("b") end,
        post_run = function(wf) wf:remove("a") end,
      }]])
    local pre = recording({ "a", "b" })
    pre.name = "pre-run"
    assert.is_true(workflow.customise(pre, dir .. "/s.lua"))
    assert.same({ "a" }, pre:names())
  end)

  it("report a script that does not load", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/s.lua", "return function(wf) end end")
    local ok, err = workflow.customise(recording({ "a" }), dir .. "/s.lua")
    assert.is_nil(ok)
    assert.matches("cannot load station script", err)
  end)

  it("report a script whose customisation names a missing step", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/s.lua", "return function(wf) wf:remove('nope') end")
    local ok, err = workflow.customise(recording({ "a" }), dir .. "/s.lua")
    assert.is_nil(ok)
    assert.matches("has no step named nope", err)
  end)

  it("report a script that puts a check after the write", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/s.lua", "return function(wf) wf:add('late', function() return true end) end")
    local ok, err = workflow.customise(recording({ "a", "write_image" }, { writes = "write_image" }),
      dir .. "/s.lua")
    assert.is_nil(ok)
    assert.matches("late comes after write_image", err)
  end)
end)
