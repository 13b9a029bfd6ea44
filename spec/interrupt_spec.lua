-- Interrupting the pht command: SIGINT and SIGTERM sent at several points
-- of a run over a train with 200 MB of results remove every temporary file
-- and partial output, leave the input as it was, exit 128+N and name the
-- step; a SIGKILL's leftovers are removed by the next run.
local helpers = require "helpers"
local pht = require "pht"
local S = require "wf_support"
local support = require "support"

local q = helpers.q
local RESULTS_MB = 200
local MARKER = "PHT-RESULT-MARKER-interrupt-7f3a"

-- Seconds since the epoch with sub-second precision (date +%s.%N).
local function now()
  return tonumber(helpers.run("date +%s.%N"))
end

local SIGNO = { HUP = 1, INT = 2, TERM = 15 }

-- Start `pht args` in the background, send `signal` `delay` seconds after
-- the process catches it (its SigCgt in /proc: before that the signal would
-- end it while the program is still being loaded, with nothing to say), wait.
-- Returns the exit status (128+N when the signal ended it) and stderr.
-- Job control (set -m) keeps SIGINT deliverable to a background job.
local function run_and_signal(args, delay, signal)
  local dir = helpers.tmpdir()
  local bit = string.format("%d", 2 ^ (SIGNO[signal] - 1))
  local script = table.concat({
    "set -m",
    q(S.bin) .. " " .. args .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err") .. " &",
    "pid=$!",
    "for _ in $(seq 2000); do",
    "  cgt=$(sed -n 's/^SigCgt:[[:space:]]*//p' /proc/$pid/status 2>/dev/null) || break",
    "  [ -n \"$cgt\" ] || break",
    "  (( 0x$cgt & " .. bit .. " )) && break",
    "  sleep 0.002",
    "done",
    "sleep " .. string.format("%.3f", delay),
    "kill -" .. signal .. " $pid 2>/dev/null",
    "wait $pid",
    "echo \"rc=$?\"",
  }, "\n")
  local out = helpers.run("bash -c " .. q(script))
  local err = helpers.read(dir .. "/err")
  helpers.run("rm -rf " .. q(dir))
  return tonumber(out:match("rc=(%d+)")), err
end

-- The names in dir (none when it is empty or missing).
local function names_in(dir)
  local out = {}
  for line in helpers.run("ls -A " .. q(dir) .. " 2>/dev/null || true"):gmatch("[^\n]+") do
    out[#out + 1] = line
  end
  return out
end

-- The last line of text.
local function last_line(text)
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  return last or ""
end

-- Size, modification time and inode of path: what any write would change.
local function stat_of(path)
  return helpers.run("stat -c '%s %Y.%y %i' " .. q(path))
end

local EXIT = { INT = 130, TERM = 143, HUP = 129 }

describe("the pht command, interrupted", function()
  local work, train, preran, tmpd, outd
  local baseline = {}

  -- Train with 200 MB of results, encrypted by station_1: stage 0, pre-run,
  -- a run layer with the results, post-run. preran: that train after
  -- station_2's pre-run (what post-run takes).
  setup(function()
    work = helpers.tmpdir()
    tmpd, outd = work .. "/tmp", work .. "/out"
    helpers.run("mkdir -p " .. q(tmpd) .. " " .. q(outd))
    train = work .. "/train.tar"
    helpers.run("cp " .. q(helpers.vectors .. "/" .. S.stages[0]) .. " " .. q(train))
    local ref = "docker-archive:" .. train
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))
    assert(code == 0, err)
    local big = work .. "/big.bin"
    helpers.run("head -c " .. RESULTS_MB .. "M /dev/urandom > " .. q(big))
    S.tamper(ref, function(w)
      assert(w:add_dir("/opt/pht_results", { opaque = true }))
      assert(w:add_file("/opt/pht_results/big.bin", big))
      assert(w:add_bytes("/opt/pht_results/marker.txt", MARKER .. "\n"))
    end, "run with big results")
    os.remove(big)
    code, _, err = S.pht("post-run -q " .. q(ref) .. " " .. S.station_args(1))
    assert(code == 0, err)
    -- station_2's pre-run, timed: the delays below are fractions of it
    preran = work .. "/preran.tar"
    local t0 = now()
    code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(2) .. " --output "
      .. q("docker-archive:" .. preran))
    baseline["pre-run"] = now() - t0
    assert(code == 0, err)
  end)

  teardown(function()
    if work then helpers.run("rm -rf " .. q(work)) end
  end)

  -- The command line of each verb, writing under outd, temporary files in tmpd.
  local function verb_args(verb)
    if verb == "pre-run" then
      return q("docker-archive:" .. train), "pre-run -q " .. q("docker-archive:" .. train) .. " "
        .. S.station_args(2) .. " --tmpdir " .. q(tmpd) .. " --output "
        .. q("docker-archive:" .. outd .. "/train.tar")
    elseif verb == "post-run" then
      return preran, "post-run -q " .. q("docker-archive:" .. preran) .. " " .. S.station_args(2)
        .. " --tmpdir " .. q(tmpd) .. " --output " .. q("docker-archive:" .. outd .. "/train.tar")
    else
      return train, "decrypt-results -q " .. q("docker-archive:" .. train) .. " --key "
        .. q(S.key("user")) .. " --tmpdir " .. q(tmpd) .. " --out " .. q(outd .. "/results")
    end
  end

  local function input_path(verb)
    return verb == "post-run" and preran or train
  end

  for _, verb in ipairs({ "pre-run", "post-run", "decrypt-results" }) do
    it(verb .. " stopped by SIGINT, SIGTERM or SIGHUP at several points leaves no temporary file, no "
      .. "partial output, the input unchanged, and exits 128+N naming the step", function()
      local _, args = verb_args(verb)
      local input = input_path(verb)
      local before = helpers.sha256_file(input)
      if not baseline[verb] then
        local t0 = now()
        local code, _, err = S.pht(args)
        baseline[verb] = now() - t0
        assert(code == 0, err)
        helpers.run("rm -rf " .. q(outd) .. " && mkdir " .. q(outd))
      end
      local steps = {}
      local n = 0
      local stamp = stat_of(input)
      local function distinct_steps()
        local d = 0
        for _ in pairs(steps) do d = d + 1 end
        return d
      end
      -- points through the run, SIGINT and SIGTERM taking turns, and one
      -- SIGHUP; on a loaded machine the steps' shares of the run shift, so
      -- further points follow until two steps have been interrupted
      local points = { { 0.1, "INT" }, { 0.35, "TERM" }, { 0.5, "HUP" }, { 0.6, "INT" }, { 0.85, "TERM" } }
      local extra = { { 0.03, "TERM" }, { 0.2, "INT" }, { 0.7, "TERM" }, { 0.95, "INT" }, { 0.01, "INT" },
        { 0.45, "TERM" }, { 0.05, "INT" } }
      local i = 0
      while true do
        i = i + 1
        local point = points[i] or (distinct_steps() < 2 and extra[i - #points])
        if not point then break end
        local frac, sig = point[1], point[2]
        do
          n = n + 1
          local code, err = run_and_signal(args, baseline[verb] * frac, sig)
          local line = last_line(err)
          local where = ("after %.2f s (%s, SIG%s)"):format(baseline[verb] * frac, verb, sig)
          assert.same({}, names_in(tmpd), "temporary files left " .. where)
          if code == 0 then
            -- the signal came after the run: the output is whole
            assert.is_truthy(#names_in(outd) == 1, where)
          else
            assert.equal(EXIT[sig], code, where .. ": " .. err)
            local pattern = "^pht " .. verb:gsub("%-", "%%-") .. ": interrupted (.-) %(SIG" .. sig
              .. "%); temporary files removed$"
            local what = line:match(pattern)
            assert.is_truthy(what, where .. ": " .. err)
            local step = what:match("^during ([%w_]+)$")
            if step then
              steps[step] = true
              assert.same({}, names_in(outd), "partial output " .. where)
            else
              assert.equal("after its output was written", what)
            end
          end
          helpers.run("rm -rf " .. q(outd) .. " && mkdir " .. q(outd))
          assert.equal(stamp, stat_of(input), "input touched " .. where)
        end
      end
      assert.equal(before, helpers.sha256_file(input), "input changed")
      local seen = {}
      for step in pairs(steps) do seen[#seen + 1] = step end
      table.sort(seen)
      assert.is_true(#seen >= 2, "interrupted in fewer than two steps over " .. n .. " runs (steps: "
        .. table.concat(seen, ", ") .. ")")
    end)
  end

  it("inspect --verify-layers stopped by SIGINT or SIGTERM prints one line naming the signal and exits 128+N", function()
    local args = "inspect --verify-layers " .. q("docker-archive:" .. train) .. " --tmpdir " .. q(tmpd)
    local t0 = now()
    local code0 = S.pht(args)
    local took = now() - t0
    assert.equal(0, code0)
    for _, frac in ipairs({ 0.3, 0.7 }) do
      for _, sig in ipairs({ "INT", "TERM" }) do
        local code, err = run_and_signal(args, took * frac, sig)
        assert.same({}, names_in(tmpd))
        if code ~= 0 then
          assert.equal(EXIT[sig], code, err)
          -- the report may be out before the signal comes
          assert.matches("^pht inspect: interrupted [%w ]*%(SIG" .. sig .. "%); temporary files removed\n$", err)
        end
      end
    end
  end)

  it("pre-run from and into the Docker engine stopped by SIGINT or SIGTERM leaves no container and "
    .. "no new image", function()
    local ok, why = support.docker_available()
    if not ok then return pending(why) end
    local host = support.docker_host()
    local name = support.unique_name("sigd")
    local input, output = name .. ":latest", name .. "-out:latest"
    finally(function()
      support.docker("rmi -f " .. q(input) .. " " .. q(output))
    end)
    helpers.run("skopeo copy -q --dest-daemon-host " .. q(host) .. " " .. q("docker-archive:" .. train)
      .. " " .. q("docker-daemon:" .. input))
    local function engine_state()
      local _, tags = support.docker("images --format '{{.Repository}}:{{.Tag}} {{.ID}}'")
      local mine = {}
      for line in tags:gmatch("[^\n]+") do
        if line:find(name, 1, true) then mine[#mine + 1] = line end
      end
      table.sort(mine)
      local _, scratch = support.docker("ps -aq --filter label=org.pht.libpht.scratch")
      return table.concat(mine, "\n"), scratch
    end
    local before_images = engine_state()
    local args = "pre-run -q " .. q("docker-daemon:" .. input) .. " " .. S.station_args(2) .. " --tmpdir "
      .. q(tmpd) .. " --output " .. q("docker-daemon:" .. output)
    local t0 = now()
    local code0, _, err0 = S.pht(args)
    local took = now() - t0
    assert.equal(0, code0, err0)
    support.docker("rmi -f " .. q(output))
    for _, point in ipairs({ { 0.3, "INT" }, { 0.7, "TERM" } }) do
      local code, err = run_and_signal(args, took * point[1], point[2])
      local images, scratch = engine_state()
      assert.same({}, names_in(tmpd))
      if code ~= 0 and not err:find("after its output was written", 1, true) then
        assert.equal(EXIT[point[2]], code, err)
        assert.equal(before_images, images, "images after SIG" .. point[2] .. ": " .. err)
      end
      -- a scratch container of this run would be labelled; others' are removed when theirs end
      assert.is_falsy(scratch:find("%x"), "scratch containers: " .. scratch)
      support.docker("rmi -f " .. q(output))
    end
  end)

  -- The run after a killed one: it succeeds, leaves --tmpdir empty (what
  -- the killed run left there swept) and writes its output; outd is emptied.
  local function runs_clean(args)
    local code, _, err = S.pht(args)
    assert.equal(0, code, err)
    assert.same({}, names_in(tmpd))
    assert.same({ "train.tar" }, names_in(outd))
    helpers.run("rm -rf " .. q(outd) .. " && mkdir " .. q(outd))
  end

  it("a pre-run of plain layers killed with SIGKILL while decrypting leaves no file under --tmpdir "
    .. "and no output: it reads the ciphertext where it is", function()
    local _, args = verb_args("pre-run")
    local log = work .. "/progress"
    -- kill it once its progress says it decrypts the results
    local script = table.concat({
      q(S.bin) .. " " .. args:gsub("^pre%-run %-q ", "pre-run -q --progress=json ") .. " >/dev/null 2>" .. q(log) .. " &",
      "pid=$!",
      "for i in $(seq 1 3000); do",
      "  if grep -q '\"step\": *\"decrypt_results\"' " .. q(log) .. " 2>/dev/null; then kill -KILL $pid; break; fi",
      "  sleep 0.005",
      "done",
      "wait $pid; echo \"rc=$?\"",
    }, "\n")
    local code = tonumber(helpers.run("bash -c " .. q(script)):match("rc=(%d+)"))
    assert.equal(137, code)
    assert.equal("", helpers.run("find " .. q(tmpd) .. " -type f"))
    assert.same({}, names_in(outd), "no output and no temporary file beside it")
    runs_clean(args)
  end)

  it("a pre-run of gzip layers killed with SIGKILL while decrypting leaves only pht.PID.* under "
    .. "--tmpdir, with no plaintext in it, which the next run removes; the output is never visible", function()
    -- skopeo gzips the layers of an OCI layout: pre-run extracts their ciphertext first
    local layout = work .. "/gz"
    if not helpers.sh("test -d " .. q(layout)) then
      helpers.run("skopeo copy -q " .. q("docker-archive:" .. train .. ":" .. S.repo_tag) .. " "
        .. q("oci:" .. layout .. ":latest"))
    end
    local args = "pre-run -q " .. q("oci:" .. layout .. ":latest") .. " " .. S.station_args(2) .. " --tmpdir "
      .. q(tmpd) .. " --output " .. q("docker-archive:" .. outd .. "/train.tar")
    -- kill it once it works in its private directory (the ciphertext it
    -- decrypts from; plaintext goes straight into the unnamed new layer)
    local script = table.concat({
      q(S.bin) .. " " .. args .. " >/dev/null 2>&1 &",
      "pid=$!",
      "for i in $(seq 1 3000); do",
      "  if [ -n \"$(ls -A " .. q(tmpd) .. "/pht.* 2>/dev/null)\" ]; then kill -KILL $pid; break; fi",
      "  sleep 0.005",
      "done",
      "wait $pid; echo \"rc=$?\"",
    }, "\n")
    local code = tonumber(helpers.run("bash -c " .. q(script)):match("rc=(%d+)"))
    assert.equal(137, code)
    local left = names_in(tmpd)
    assert.equal(1, #left, "one private directory left by the killed run")
    assert.is_truthy(left[1]:match("^pht%.%d+%.[%w]+$"), left[1])
    -- nothing decrypted in it: no file holds the results' or the train's plaintext
    assert.equal("", helpers.run("find " .. q(tmpd) .. " -name '*.plain'"))
    assert.same({}, names_in(outd), "no output and no temporary file beside it")
    -- the next run sweeps it when it makes its own: the owner is gone
    runs_clean(args)
  end)

  it("a pre-run killed with SIGKILL while writing its output leaves no file beside it", function()
    local _, args = verb_args("pre-run")
    -- kill it once it holds a file open in the output's directory: the
    -- output being written, unnamed (O_TMPFILE) until it is complete
    local script = table.concat({
      q(S.bin) .. " " .. args .. " >/dev/null 2>&1 &",
      "pid=$!",
      "for i in $(seq 1 3000); do",
      "  if ls -l /proc/$pid/fd 2>/dev/null | grep -q -F " .. q(outd .. "/") .. "; then",
      "    ls -l /proc/$pid/fd | grep -F " .. q(outd .. "/") .. " | sed 's/.*-> //' > " .. q(work .. "/open"),
      "    kill -KILL $pid; break",
      "  fi",
      "  sleep 0.01",
      "done",
      "wait $pid; echo \"rc=$?\"",
    }, "\n")
    local out = helpers.run("bash -c " .. q(script))
    assert.equal("137", out:match("rc=(%d+)"), "killed while writing")
    -- what it had open: a file with no name in outd
    assert.matches("%(deleted%)", helpers.read(work .. "/open"))
    assert.same({}, names_in(outd))
    helpers.run("rm -rf " .. q(outd) .. " " .. q(tmpd) .. " && mkdir " .. q(outd) .. " " .. q(tmpd))
  end)
end)

describe("pht.interrupted", function()
  after_each(function() pht.clear_interrupt() end)

  it("is nil until a signal is recorded, then names it", function()
    assert.is_nil(pht.interrupted())
    pht.interrupt(15)
    local name, signo = pht.interrupted()
    assert.equal("SIGTERM", name)
    assert.equal(15, signo)
  end)

  it("makes the core's loops stop with EINTR, and a workflow stop at its next step", function()
    local workflow = require "pht.workflow"
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/plain", string.rep("x", 1024 * 1024))
    local key = pht.new_symkey()
    pht.interrupt(2)
    local ok, err, code = key:encrypt_file(dir .. "/plain", dir .. "/enc")
    assert.is_nil(ok)
    assert.equal("EINTR", code)
    assert.matches("interrupted %(SIGINT%)", err)
    assert.is_false(helpers.sh("test -e " .. q(dir .. "/enc")))
    local ran = {}
    local wf = workflow.new("demo")
    wf:add("first", function() ran[#ran + 1] = "first" return true end)
    local f
    ok, f = wf:run(workflow.context())
    assert.is_nil(ok)
    assert.same({}, ran)
    assert.equal("EINTR", f.code)
    assert.equal("SIGINT", f.signal)
    assert.equal("first", f.step)
    helpers.run("rm -rf " .. q(dir))
  end)
end)
