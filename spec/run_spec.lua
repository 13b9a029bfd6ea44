-- `pht run`: a station's whole round in the Docker engine, on the suite's
-- real dockerd. A train built with `pht build` on the base image, whose own
-- command writes its results under /opt/pht_results, travels a three-station
-- route by `pht run` alone; the creator decrypts the three visits. The
-- docker CLI is the oracle for what the run leaves in the engine: no
-- container, no image named for the run, no new dangling image, no layer of
-- the output holding the train's plaintext. A train that exits 1 is
-- reported with its status and output and leaves the input as it was.
local helpers = require "helpers"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"

local q = helpers.q

-- Plaintext of the train's results; no layer of the output may hold it.
local SECRET = "pht-run-spec: counted rows"

-- The train's command (pht build --run entrypoint.sh): counts its visits,
-- reports what the station gave it (data mount, variables, limits, network)
-- on stdout and a line on stderr.
local ENTRYPOINT = [[#!/bin/sh
set -e
mkdir -p /opt/pht_results/log
n=$(cat /opt/pht_results/count.txt 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /opt/pht_results/count.txt
echo "visit $n: ]] .. SECRET .. [[ $((n * 1000))" >> /opt/pht_results/log/visits.txt
echo "train stdout: visit $n"
echo "train stderr: visit $n" >&2
if [ -e /data/input.txt ]; then echo "data: $(cat /data/input.txt)"; fi
if touch /data/written 2>/dev/null; then echo "data writable"; fi
echo "env: ${PHT_SPEC_A:-unset} ${PHT_SPEC_B:-unset}"
echo "net: $(ls /sys/class/net | tr '\n' ' ')"
mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)
echo "mem: $mem"
echo "cpu: ${cpu%% *}"
]]

local FAILING = [[#!/bin/sh
mkdir -p /opt/pht_results
echo "]] .. SECRET .. [[ half done" > /opt/pht_results/partial.txt
echo "failing train: out"
echo "failing train: cannot read the data" >&2
exit 1
]]

-- The run's name from `pht run -v` (its containers and images carry it).
local function run_name(err)
  return assert(err:match("named (pht%-run%-%x+)"), "pht run -v did not name the run:\n" .. err)
end

-- What the run named `name` left in the engine: containers of any state
-- and images tagged with its name.
local function left_by(name)
  local containers = D.docker("ps -a --format '{{.Names}}' --filter name=" .. q(name))
  local images = D.docker("images -a --format '{{.Repository}}:{{.Tag}}' --filter reference=" .. q(name .. ":*"))
  local labelled = D.docker("ps -a -q --filter label=org.pht.libpht.run=" .. q(name))
  return containers .. images .. labelled
end

-- Every layer of the image as `docker save` writes it; fails if one holds needle.
local function assert_no_layer_holds(name, needle)
  for i, l in ipairs(S.layers(D.save(name), name)) do
    assert.is_nil(helpers.read(l.path):find(needle, 1, true), "layer " .. i .. " of " .. name .. " holds plaintext")
  end
end

-- A train of `entrypoint` for stations s1..s3, built into the daemon as REPO:latest.
local function build_train(t, repo, entrypoint)
  local files = helpers.tmpdir()
  helpers.write(files .. "/entrypoint.sh", entrypoint)
  local route = ""
  for i = 1, 3 do route = route .. " --station " .. q("s" .. i .. "=" .. t.dir .. "/s" .. i .. ".pub.pem") end
  local code, _, err = S.pht("build -q --files " .. q(files) .. route .. " --creator-id 7 --creator-key "
    .. q(t.dir .. "/creator.pem") .. " --base " .. q(t.base_image) .. " --output " .. q(repo .. ":latest"), D.env())
  assert.equal(0, code, err)
  return repo .. ":latest"
end

-- D.start, but as a job of its own (bash's set -m): a background command of
-- a shell without job control starts with SIGINT ignored, which pht keeps.
local function start_catching(args)
  local dir = helpers.tmpdir()
  local prefix = ""
  for k, v in pairs(D.env()) do prefix = prefix .. k .. "=" .. q(v) .. " " end
  helpers.run("bash -c " .. q("set -m; ( set -m; " .. prefix .. q(S.bin) .. " " .. args .. " >" .. q(dir .. "/out")
    .. " 2>" .. q(dir .. "/err") .. " </dev/null & echo $! >" .. q(dir .. "/pid") .. "; wait $!; echo $? >"
    .. q(dir .. "/code") .. " ) >/dev/null 2>&1 </dev/null &"))
  local function wait_for(file, what)
    assert(helpers.sh("for i in $(seq 900); do [ -s " .. q(file) .. " ] && break; sleep 0.1; done; [ -s "
      .. q(file) .. " ]"), "the background pht did not " .. what .. " within 90 s")
    return helpers.read(file)
  end
  local job = { pid = tonumber(wait_for(dir .. "/pid", "start"):match("%d+")), err = dir .. "/err" }
  function job.wait()
    return tonumber(wait_for(dir .. "/code", "end"):match("%d+")), helpers.read(dir .. "/out"),
      helpers.read(dir .. "/err")
  end
  return job
end

describe("pht run", function()
  local t -- keys, the train, what the daemon held before

  local function prepare()
    if t then return t end
    t = { dir = helpers.tmpdir(), repo = support.unique_name("run"), dangling = D.dangling() }
    t.base_image = assert(support.load_base_image())
    for _, who in ipairs({ "creator", "s1", "s2", "s3" }) do
      assert.equal(0, (S.pht("keygen --out " .. q(t.dir .. "/" .. who))))
    end
    t.latest = build_train(t, t.repo, ENTRYPOINT)
    t.data = helpers.tmpdir()
    helpers.write(t.data .. "/input.txt", "station data\n")
    return t
  end

  teardown(function()
    if not t then return end
    D.rmi(t.repo .. ":latest", t.repo .. ":base")
    if t.failing then D.rmi(t.failing, (t.failing:gsub(":latest$", ":base"))) end
  end)

  for i = 1, 3 do
    it("takes the train to station s" .. i .. " in one command and leaves no plaintext in the engine", function()
      local ok, why = D.ready(true)
      if not ok then return pending(why) end
      prepare()
      local before = assert(D.id(t.latest))
      local extra = ""
      if i == 1 then -- the station's data and variables, limits
        extra = " --volume " .. q(t.data .. ":/data:ro") .. " -e PHT_SPEC_A=given --env PHT_SPEC_B"
          .. " --memory 64m --cpus 0.5"
      elseif i == 2 then
        extra = " --mount " .. q("type=bind,source=" .. t.data .. ",target=/data") .. " --network none"
      end
      local code, out, err = S.pht("run -v " .. q(t.latest) .. " --station s" .. i .. " --key "
        .. q(t.dir .. "/s" .. i .. ".pem") .. extra, { DOCKER_HOST = support.docker_host(), PHT_SPEC_B = "passed" })
      assert.equal(0, code, err)
      local name = run_name(err)
      -- the train's own output, split: stdout to stdout, stderr to stderr
      assert.matches("train stdout: visit " .. i .. "\n", out, 1, true)
      assert.is_nil(out:find("train stderr", 1, true))
      assert.matches("train stderr: visit " .. i .. "\n", err, 1, true)
      assert.matches("net: lo \n", out, 1, true) -- --network none is the default
      if i == 1 then
        assert.matches("data: station data\n", out, 1, true)
        assert.is_nil(out:find("data writable", 1, true))
        assert.matches("env: given passed\n", out, 1, true)
        assert.matches("mem: 67108864\n", out, 1, true)
        assert.matches("cpu: 50000\n", out, 1, true)
      elseif i == 2 then
        assert.matches("data: station data\n", out, 1, true)
        assert.matches("data writable\n", out, 1, true)
        assert.matches("env: unset unset\n", out, 1, true)
      end
      assert.matches("station s" .. i .. " ran the train (exit status 0) and sealed the results into "
        .. "docker-daemon:" .. t.latest .. " (stop " .. i .. " of 3)", err, 1, true)
      assert.are_not.equal(before, D.id(t.latest))
      assert.is_nil(D.id(before), "the input image is still there after the tag moved")
      assert.equal("", left_by(name))
      local ids = D.run_plaintext_ids(err)
      assert.equal(2, #ids, err)
      for _, id in ipairs(ids) do assert.is_nil(D.id(id), "the plaintext image " .. id .. " is still there") end
      assert.same({}, D.run_dangling(t.dangling))
      assert_no_layer_holds(t.latest, SECRET)
      assert_no_layer_holds(t.latest, "train stdout")
      -- the station's variables and the run's label stay at the station
      local config = D.docker("image inspect --format '{{json .Config.Env}} {{json .Config.Labels}}' " .. q(t.latest))
      assert.is_nil(config:find("PHT_SPEC", 1, true), config)
      assert.is_nil(config:find("org.pht.libpht.run", 1, true), config)
      local history = D.docker("history --no-trunc --format '{{.CreatedBy}}' " .. q(t.latest))
      assert.equal("libpht post-run", history:match("^[^\n]*"))
      assert.is_nil(history:find("libpht pre-run", 1, true))
    end)
  end

  it("brings the creator the results of the three visits", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    local out = t.dir .. "/results"
    local code, _, err = S.pht("decrypt-results -q " .. q(t.latest) .. " --key " .. q(t.dir .. "/creator.pem")
      .. " --out " .. q(out), D.env())
    assert.equal(0, code, err)
    assert.equal("3\n", helpers.read(out .. "/count.txt"))
    assert.equal("visit 1: " .. SECRET .. " 1000\nvisit 2: " .. SECRET .. " 2000\nvisit 3: " .. SECRET
      .. " 3000\n", helpers.read(out .. "/log/visits.txt"))
  end)

  it("reports a train that exits 1 with its status and output, leaving the input unchanged and nothing behind",
    function()
      local ok, why = D.ready(true)
      if not ok then return pending(why) end
      prepare()
      t.failing = build_train(t, support.unique_name("run-fail"), FAILING)
      local before = assert(D.id(t.failing))
      local saved = D.save(t.failing)
      local code, out, err = S.pht("run -v " .. q(t.failing) .. " --station s1 --key " .. q(t.dir .. "/s1.pem"),
        D.env())
      assert.equal(4, code, err)
      local name = run_name(err)
      assert.matches("failing train: out\n", out, 1, true)
      assert.matches("failing train: cannot read the data\n", err, 1, true)
      assert.matches("pht run: run failed at step run_train: the train exited with status 1; "
        .. "the input train is unchanged", err, 1, true)
      assert.equal(before, D.id(t.failing))
      assert.equal(helpers.run("sha256sum < " .. q(saved)), helpers.run("sha256sum < " .. q(D.save(t.failing))))
      assert.equal("", left_by(name))
      local ids = D.run_plaintext_ids(err)
      assert.equal(1, #ids, err) -- pre-run's; nothing was committed
      assert.is_nil(D.id(ids[1]), "the plaintext image " .. ids[1] .. " is still there")
      assert.same({}, D.run_dangling(t.dangling))
    end)

  it("runs a train in a docker-archive named by the archive alone, keeping its names", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    local dir = helpers.tmpdir()
    local files = helpers.tmpdir()
    helpers.write(files .. "/entrypoint.sh", ENTRYPOINT)
    local code, _, err = S.pht("build -q --files " .. q(files) .. " --station " .. q("s1=" .. t.dir .. "/s1.pub.pem")
      .. " --creator-id 7 --creator-key " .. q(t.dir .. "/creator.pem") .. " --base " .. q(t.base_image)
      .. " --output " .. q("docker-archive:" .. dir .. "/train.tar:pht/archived:latest"), D.env())
    assert.equal(0, code, err)
    local out
    code, out, err = S.pht("run -v " .. q("docker-archive:" .. dir .. "/train.tar") .. " --station s1 --key "
      .. q(t.dir .. "/s1.pem"), D.env())
    assert.equal(0, code, err)
    assert.matches("train stdout: visit 1\n", out, 1, true)
    local manifest = helpers.run("tar -xOf " .. q(dir .. "/train.tar") .. " manifest.json")
    assert.matches('"pht/archived:latest"', manifest, 1, true)
    assert.matches('"pht/archived:base"', manifest, 1, true)
    assert.equal("", left_by(run_name(err)))
    assert.same({}, D.run_dangling(t.dangling))
    code, _, err = S.pht("decrypt-results -q " .. q("docker-archive:" .. dir .. "/train.tar") .. " --key "
      .. q(t.dir .. "/creator.pem") .. " --out " .. q(dir .. "/results"), D.env())
    assert.equal(0, code, err)
    assert.equal("1\n", helpers.read(dir .. "/results/count.txt"))
  end)

  it("removes at its next start what a pht run killed with SIGKILL during the train's run left", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    local slow = build_train(t, support.unique_name("run-killed"), "#!/bin/sh\nsleep 120\n")
    finally(function() D.rmi(slow, (slow:gsub(":latest$", ":base"))) end)
    local before = assert(D.id(slow))
    local job = D.start("run -v " .. q(slow) .. " --station s1 --key " .. q(t.dir .. "/s1.pem"))
    local name -- the run's container, once the train runs in it
    for _ = 1, 600 do
      local out = D.docker("ps --format '{{.Names}}' --filter label=org.pht.libpht.run.owner")
      for n in out:gmatch("[^\n]+") do
        local owner = D.docker("inspect --format '{{index .Config.Labels \"org.pht.libpht.run.owner\"}}' " .. q(n))
        if tonumber(owner:match("^(%d+)%.")) == job.pid then name = n end
      end
      if name then break end
      helpers.sh("sleep 0.1")
    end
    assert.is_string(name, "the run started no container within 60 s")
    helpers.run("kill -KILL " .. job.pid)
    assert.equal(137, (job.wait()))
    -- the control: what the killed run left, by its labels
    assert.matches(name, left_by(name), 1, true)
    local images = D.docker("images -q --no-trunc --filter label=org.pht.libpht.run=" .. q(name))
    assert.is_truthy(images:match("sha256:%x+"), "the killed run's plaintext image is not there")
    assert.equal(before, D.id(slow))
    -- the next run (here one that fails at once, on an image that is not there) removes it
    local code, _, err = S.pht("run " .. q(support.unique_name("absent") .. ":latest") .. " --station s1 --key "
      .. q(t.dir .. "/s1.pem"), D.env())
    assert.equal(3, code, err)
    assert.matches("removed the container " .. name .. " a killed pht run left", err, 1, true)
    assert.matches("removed the plaintext image sha256:", err, 1, true)
    assert.equal("", left_by(name))
    assert.equal("", D.docker("images -q --filter label=org.pht.libpht.run=" .. q(name)))
    assert.equal(before, D.id(slow))
  end)

  -- pht run stopped by SIGINT, SIGTERM or SIGHUP: at several points (in its
  -- pre-run, while the train runs, just after) it says once which step was
  -- interrupted, exits 128+N, and leaves no container, no image of the run
  -- (plaintext included) and the input train as it was.
  it("stopped by SIGINT, SIGTERM or SIGHUP at several points removes its containers and plaintext images",
    function()
      local ok, why = D.ready(true)
      if not ok then return pending(why) end
      prepare()
      -- the train leaves 200 MB of results, which post-run hashes and encrypts
      local slow = build_train(t, support.unique_name("run-signalled"), "#!/bin/sh\nmkdir -p /opt/pht_results\n"
        .. "head -c 200000000 /dev/urandom > /opt/pht_results/big.bin\nsleep 4\n")
      finally(function() D.rmi(slow, (slow:gsub(":latest$", ":base"))) end)
      local before = assert(D.id(slow))
      local signals = { INT = 130, TERM = 143, HUP = 129 }
      -- in pre-run, while the train runs, and in post-run (after the commit)
      local moments = { { "INT", 0.3 }, { "TERM", "running" }, { "HUP", "running" }, { "INT", "post_run" },
        { "TERM", "post_run" }, { "HUP", "post_run" } }
      for _, m in ipairs(moments) do
        local sig, when = m[1], m[2]
        local job = start_catching("run -v " .. q(slow) .. " --station s1 --key " .. q(t.dir .. "/s1.pem"))
        if when == "running" then
          -- once the train runs in its container
          local found = false
          for _ = 1, 600 do
            local out = D.docker("ps --format '{{.Names}}' --filter label=org.pht.libpht.run.owner")
            for n in out:gmatch("[^\n]+") do
              local owner = D.docker("inspect --format '{{index .Config.Labels \"org.pht.libpht.run.owner\"}}' "
                .. q(n))
              if tonumber(owner:match("^(%d+)%.")) == job.pid then found = true end
            end
            if found then break end
            helpers.sh("sleep 0.1")
          end
          assert.is_true(found, "the run started no container within 60 s")
        elseif when == "post_run" then
          -- once its post-run step began
          assert(helpers.sh("for i in $(seq 900); do grep -q 'post_run$' " .. q(job.err) .. " && break; sleep 0.1; "
            .. "done; grep -q 'post_run$' " .. q(job.err)), "the run did not reach post_run within 90 s")
          helpers.sh("sleep 0.2")
        else
          helpers.sh("sleep " .. when)
        end
        helpers.run("kill -" .. sig .. " " .. job.pid)
        local code, _, err = job.wait()
        local at = "SIG" .. sig .. " at " .. tostring(when) .. ": "
        assert.equal(signals[sig], code, at .. err)
        local _, n = err:gsub("interrupted", "")
        assert.equal(1, n, at .. "one line names the interruption:\n" .. err)
        local name = err:match("named (pht%-run%-%x+)")
        if name then
          assert.equal("", left_by(name), at .. "left in the engine")
          assert.equal("", D.docker("images -q --filter label=org.pht.libpht.run=" .. q(name)), at .. "images")
        end
        for _, id in ipairs(D.run_plaintext_ids(err)) do
          assert.is_nil(D.id(id), at .. "the plaintext image " .. id .. " is still there")
        end
        assert.equal(before, D.id(slow), at .. "the input train changed")
      end
      assert.same({}, D.run_dangling(t.dangling))
    end)

  it("refuses a data mount over /opt before it decrypts anything, exit 2", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    local before = assert(D.id(t.latest))
    for _, opt in ipairs({ "--volume " .. q(t.data .. ":/opt/pht_results"), "--mount "
      .. q("type=bind,source=" .. t.data .. ",target=/opt"), "--volume " .. q(t.data .. ":/") }) do
      local code, _, err = S.pht("run " .. q(t.latest) .. " --station s1 --key " .. q(t.dir .. "/s1.pem")
        .. " " .. opt, D.env())
      assert.equal(2, code, err)
      assert.matches("would cover /opt, which holds the train and its results", err, 1, true)
    end
    assert.equal(before, D.id(t.latest))
  end)

  it("refuses an unknown network mode and a malformed memory limit, exit 2", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    local args = "run " .. q("docker-daemon:" .. t.repo .. ":latest") .. " --station s1 --key " .. q(t.dir .. "/s1.pem")
    local code, _, err = S.pht(args .. " --network container:x", D.env())
    assert.equal(2, code)
    assert.matches("--network container:x: libpht runs trains with none, bridge or host", err, 1, true)
    code, _, err = S.pht(args .. " --memory lots", D.env())
    assert.equal(2, code)
    assert.matches("--memory lots: give a size", err, 1, true)
    code, _, err = S.pht(args .. " --base x:base --no-rebase", D.env())
    assert.equal(2, code)
    assert.matches("--base and --no-rebase exclude each other", err, 1, true)
  end)
end)
