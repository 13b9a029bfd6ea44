-- pht.verify: the stock pre-run without its writing steps, as a report. The
-- reference's trains verify for the station whose turn it is, the image is
-- left byte for byte as it was, and a failure names its step.
local helpers = require "helpers"
local verify = require "pht.verify"
local S = require "wf_support"

local q = helpers.q

local function opts(n, extra)
  local o = { station = "station_" .. n, key_path = helpers.key_path("station_" .. n), tmpdir = helpers.tmpdir() }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The stock script's step names that do not write, read from the script.
local function stock_steps()
  local wf = assert(loadfile(helpers.root .. "/scripts/pre_run.lua"))()
  local names, writers = {}, {}
  for _, s in ipairs(wf.steps) do
    if s.writes then writers[#writers + 1] = s.name else names[#names + 1] = s.name end
  end
  return names, writers
end

local function names_of(report)
  local names = {}
  for i, s in ipairs(report.steps) do names[i] = s.name end
  return names
end

describe("pht.verify.train", function()
  for n = 0, 2 do
    it("verifies reference stage " .. n .. " for station_" .. (n + 1) .. " and leaves the image as it was", function()
      local path, ref = S.copy_stage(n)
      local before = helpers.sha256_file(path)
      local o = opts(n + 1)
      local report = assert(verify.train(ref, o))
      assert.is_true(report.ok, report.message)
      assert.equal("station_" .. (n + 1), report.station)
      local names, writers = stock_steps()
      assert.same(names, names_of(report))
      assert.same(writers, report.not_written)
      for _, s in ipairs(report.steps) do
        assert.is_true(s.status == "ok" or s.status == "skipped", s.name)
      end
      assert.equal(before, helpers.sha256_file(path))
      assert.equal("", helpers.run("ls -A " .. q(o.tmpdir)))
    end)
  end

  it("names the failing step, gives its message and marks the later steps not_run", function()
    local _, ref = S.copy_stage(1)
    local report = assert(verify.train(ref, opts(3)))
    assert.is_false(report.ok)
    assert.equal("check_turn", report.failed_step)
    assert.matches("pre-run failed at step check_turn: it is station station_2's turn", report.message, 1, true)
    local seen = false
    for _, s in ipairs(report.steps) do
      if s.name == "check_turn" then
        seen = true
        assert.equal("failed", s.status)
        assert.is_false(s.ok)
        assert.matches("it is station station_2's turn", s.message, 1, true)
      elseif seen then
        assert.equal("not_run", s.status, s.name)
      else -- check_master: no master image given
        assert.equal(s.name == "check_master" and "skipped" or "ok", s.status, s.name)
      end
    end
  end)

  it("builds a fresh workflow each call, so a removed step stays in the next report", function()
    local _, ref = S.copy_stage(0)
    local first = assert(verify.train(ref, opts(1)))
    local second = assert(verify.train(ref, opts(1)))
    assert.same(names_of(first), names_of(second))
    assert.same(stock_steps(), names_of(second))
  end)

  it("applies a station script's checks before the write it removes", function()
    local _, ref = S.copy_stage(0)
    local script = helpers.tmpdir() .. "/station.lua"
    helpers.write(script, [[
return { pre_run = function(wf)
  wf:check("only_known_creators", function(ctx)
    return nil, "creator " .. ctx.config:creator_id() .. " is not on this station's list"
  end)
end }
]])
    local report = assert(verify.train(ref, opts(1, { station_script = script })))
    assert.equal("only_known_creators", report.failed_step)
    assert.equal("only_known_creators", report.steps[#report.steps].name)
    assert.matches("is not on this station's list", report.steps[#report.steps].message, 1, true)
    assert.same({ "write_image" }, report.not_written)
  end)

  it("stops before the first step once the time limit has passed", function()
    local _, ref = S.copy_stage(0)
    local report = assert(verify.train(ref, opts(1, { time_limit = -1 })))
    assert.is_false(report.ok)
    assert.is_true(report.timed_out)
    assert.equal("open_image", report.failed_step)
    assert.matches("time limit of %-1 s exceeded before step open_image", report.message)
  end)

  it("reports an image that cannot be opened at open_image", function()
    local file = helpers.tmpdir() .. "/garbage.tar"
    helpers.write(file, string.rep("not a tar ", 100))
    local report = assert(verify.train("docker-archive:" .. file, opts(1)))
    assert.equal("open_image", report.failed_step)
    assert.matches("cannot open", report.steps[1].message, 1, true)
  end)

  it("returns nil and a message when the pre-run script cannot be found", function()
    local report, err = verify.train("docker-archive:/nonexistent", opts(1, { script = "/nonexistent/pre_run.lua" }))
    assert.is_nil(report)
    assert.matches("cannot load /nonexistent/pre_run.lua", err, 1, true)
  end)
end)
