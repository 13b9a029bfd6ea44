-- The station customisations in examples/stations, run the way a station
-- runs them: `pht pre-run --script FILE` (and post-run) on the reference's trains.
local helpers = require "helpers"
local pht = require "pht"
local S = require "wf_support"

local q = helpers.q
local examples = helpers.root .. "/examples/stations"

local function fingerprint_of(pub_pem_path)
  return assert(pht.load_public_key(helpers.read(pub_pem_path))):fingerprint()
end

local function pre_run(ref, station, script, env, extra)
  return S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(station) .. " --script "
    .. q(examples .. "/" .. script) .. " " .. (extra or ""), env)
end

describe("examples/stations/allow_list.lua", function()
  local user_fp = fingerprint_of(helpers.vectors .. "/keys/user.pub.pem")

  it("accepts a train whose creator is on the list", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/allow", "# station 1's partners\ncreator " .. user_fp .. "  # bench-user\n")
    local _, ref = S.copy_stage(0)
    local code, _, err = pre_run(ref, 1, "allow_list.lua", { PHT_ALLOW_LIST = dir .. "/allow" })
    assert.equal(0, code, err)
  end)

  it("refuses a train whose creator is not on the list, at check_allowed_signers, leaving it unchanged", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/allow", "creator " .. fingerprint_of(helpers.vectors .. "/keys/station_1.pub.pem") .. "\n")
    local path, ref = S.copy_stage(0)
    local before = helpers.sha256_file(path)
    local code, _, err = pre_run(ref, 1, "allow_list.lua", { PHT_ALLOW_LIST = dir .. "/allow" })
    assert.equal(1, code, err)
    assert.matches("pre-run failed at step check_allowed_signers: creator bench-user", err, 1, true)
    assert.matches("is not on the allow-list", err, 1, true)
    assert.equal(before, helpers.sha256_file(path))
  end)

  it("refuses a builder key that is not listed when the list names builders", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/allow", "creator " .. user_fp .. "\nbuilder "
      .. fingerprint_of(helpers.vectors .. "/keys/station_2.pub.pem") .. "\n")
    local _, ref = S.copy_stage(0)
    local code, _, err = pre_run(ref, 1, "allow_list.lua", { PHT_ALLOW_LIST = dir .. "/allow" })
    assert.equal(1, code, err)
    assert.matches("check_allowed_signers: the builder's key", err, 1, true)
  end)

  it("accepts the builder when its key is listed", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/allow", "creator " .. user_fp .. "\nbuilder "
      .. fingerprint_of(helpers.vectors .. "/keys/builder.pub.pem") .. "\n")
    local _, ref = S.copy_stage(1)
    local code, _, err = pre_run(ref, 2, "allow_list.lua", { PHT_ALLOW_LIST = dir .. "/allow" })
    assert.equal(0, code, err)
  end)

  it("refuses when the list cannot be read", function()
    local _, ref = S.copy_stage(0)
    local code, _, err = pre_run(ref, 1, "allow_list.lua", { PHT_ALLOW_LIST = helpers.tmpdir() .. "/missing" })
    assert.equal(1, code, err)
    assert.matches("check_allowed_signers: cannot read the allow-list", err, 1, true)
  end)
end)

describe("examples/stations/audit_log.lua", function()
  local function read_log(path)
    local lines = {}
    for line in helpers.read(path):gmatch("[^\n]+") do lines[#lines + 1] = assert(pht.json_decode(line)) end
    return lines
  end

  it("logs every step of a successful pre-run with its outcome, then the run", function()
    local log = helpers.tmpdir() .. "/audit.jsonl"
    local _, ref = S.copy_stage(1)
    local code, _, err = pre_run(ref, 2, "audit_log.lua", { PHT_AUDIT_LOG = log })
    assert.equal(0, code, err)
    local lines = read_log(log)
    local wf = dofile(helpers.root .. "/scripts/pre_run.lua")
    local names = wf:names()
    assert.equal(#names + 1, #lines)
    for i, name in ipairs(names) do
      assert.equal(name, lines[i].step)
      -- check_master is skipped when the station names no master image
      assert.equal(name == "check_master" and "skipped" or "ok", lines[i].status, name)
      assert.equal("pre-run", lines[i].workflow)
      assert.equal("station_2", lines[i].station)
    end
    assert.equal("finish", lines[#lines].event)
    assert.is_true(lines[#lines].ok)
  end)

  it("logs the skipped steps of a first stop as skipped with the reason", function()
    local log = helpers.tmpdir() .. "/audit.jsonl"
    local _, ref = S.copy_stage(0)
    assert.equal(0, (pre_run(ref, 1, "audit_log.lua", { PHT_AUDIT_LOG = log })))
    local skipped = {}
    for _, l in ipairs(read_log(log)) do if l.status == "skipped" then skipped[l.step] = l.message end end
    assert.equal("first stop: no results yet", skipped.decrypt_results)
    assert.equal("first stop: no earlier station signed", skipped.verify_previous_signatures)
  end)

  it("logs the failing step with its reason and nothing after it", function()
    local log = helpers.tmpdir() .. "/audit.jsonl"
    local _, ref = S.copy_stage(1)
    local code = S.pht("pre-run -q " .. q(ref) .. " --station station_2 --key " .. q(S.key("station_3"))
      .. " --script " .. q(examples .. "/audit_log.lua"), { PHT_AUDIT_LOG = log })
    assert.equal(1, code)
    local lines = read_log(log)
    local failed = lines[#lines - 1]
    assert.equal("check_station_key", failed.step)
    assert.equal("failed", failed.status)
    assert.matches("is not station station_2's key", failed.message, 1, true)
    assert.equal("finish", lines[#lines].event)
    assert.is_false(lines[#lines].ok)
    assert.equal("check_station_key", lines[#lines].step)
  end)
end)

describe("examples/stations/results_size_limit.lua", function()
  -- Bytes of the stage-1 results as stored, from tar's listing of its /opt.
  local function stored_results_bytes()
    local total = 0
    local listing = helpers.run("tar -tvf " .. q(helpers.vectors .. "/stage1-station_1-post.opt.tar"))
    for size, name in listing:gmatch("%S+%s+%S+%s+(%d+)%s+%S+%s+%S+%s+([^\n]+)") do
      if name:match("^opt/pht_results/.*[^/]$") then total = total + tonumber(size) end
    end
    return total
  end

  it("refuses results over the limit at check_results_size, before decrypting them", function()
    local path, ref = S.copy_stage(1)
    local before = helpers.sha256_file(path)
    local bytes = stored_results_bytes()
    local code, _, err = pre_run(ref, 2, "results_size_limit.lua", { PHT_MAX_RESULTS_BYTES = tostring(bytes - 1) })
    assert.equal(1, code, err)
    assert.matches("pre-run failed at step check_results_size: the results hold " .. bytes
      .. " bytes in 4 file(s), over this station's limit of " .. (bytes - 1) .. " bytes", err, 1, true)
    assert.equal(before, helpers.sha256_file(path))
  end)

  it("accepts results within the limit", function()
    local _, ref = S.copy_stage(1)
    local code, _, err = pre_run(ref, 2, "results_size_limit.lua",
      { PHT_MAX_RESULTS_BYTES = tostring(stored_results_bytes()) })
    assert.equal(0, code, err)
  end)

  it("refuses in post-run when the algorithm wrote more than the limit", function()
    local path, ref = S.copy_stage(0)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))))
    S.run_reference_train(ref, 1)
    local before = helpers.sha256_file(path)
    local code, _, err = S.pht("post-run -q " .. q(ref) .. " " .. S.station_args(1) .. " --script "
      .. q(examples .. "/results_size_limit.lua"), { PHT_MAX_RESULTS_BYTES = "100" })
    assert.equal(1, code, err)
    assert.matches("post-run failed at step check_results_size", err, 1, true)
    assert.equal(before, helpers.sha256_file(path))
  end)

  it("combines with the other examples in one run", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/allow", "creator " .. fingerprint_of(helpers.vectors .. "/keys/user.pub.pem") .. "\n")
    local _, ref = S.copy_stage(2)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(3)
      .. " --script " .. q(examples .. "/allow_list.lua")
      .. " --script " .. q(examples .. "/results_size_limit.lua")
      .. " --script " .. q(examples .. "/audit_log.lua"),
      { PHT_ALLOW_LIST = dir .. "/allow", PHT_AUDIT_LOG = dir .. "/audit.jsonl" })
    assert.equal(0, code, err)
    local steps = {}
    for line in helpers.read(dir .. "/audit.jsonl"):gmatch("[^\n]+") do
      local r = assert(pht.json_decode(line))
      if r.step then steps[r.step] = r.status end
    end
    assert.equal("ok", steps.check_allowed_signers)
    assert.equal("ok", steps.check_results_size)
  end)
end)
