-- Progress of the long steps (doc/cli.md "Progress", doc/workflow.md
-- "Progress"): pht.progress's counter and renderers, the events a workflow
-- sends to options.progress, and what `pht --progress` writes on stderr
-- under a pseudo-terminal (script(1)) and without one, on a train whose
-- results are tens of MB.
local helpers = require "helpers"
local S = require "wf_support"
local pht = require "pht"
local progress = require "pht.progress"
local workflow = require "pht.workflow"
local dkjson = require "dkjson"

local q = helpers.q

-- A clock the test moves by hand.
local function fake_clock()
  local t = { now = 100 }
  t.fn = function() return t.now end
  return t
end

-- A stream that keeps what is written to it.
local function sink()
  local s = { text = "" }
  function s:write(...)
    for _, v in ipairs({ ... }) do self.text = self.text .. v end
    return self
  end
  function s:flush() end
  return s
end

describe("pht.progress.counter", function()
  it("sends an event at the start, at most one per interval, and a final one", function()
    local clock, events = fake_clock(), {}
    local c = progress.counter(function(ev) events[#events + 1] = ev end, "copy", 1000,
      { clock = clock.fn, workflow = "post-run" })
    assert.equal(1, #events)
    assert.same({ 0, 1000, "copy", "post-run" }, { events[1].done, events[1].total, events[1].step, events[1].workflow })
    c.add(100)                        -- at once: no new event
    assert.equal(1, #events)
    clock.now = clock.now + 2 * progress.INTERVAL
    c.add(100)
    assert.equal(2, #events)
    assert.equal(200, events[2].done)
    assert.near(200 / (2 * progress.INTERVAL), events[2].rate, 1e-6)
    assert.near(800 / events[2].rate, events[2].eta, 1e-6)
    clock.now = clock.now + 0.01
    c.add(800)
    c.finish("ok")
    c.finish("ok")                    -- only once
    assert.equal(3, #events)
    assert.is_true(events[3].final)
    assert.equal("ok", events[3].status)
    assert.equal(1000, events[3].done)
  end)

  it("adds a later expectation to the total and has no eta without a total", function()
    local clock, events = fake_clock(), {}
    local c = progress.counter(function(ev) events[#events + 1] = ev end, "open", nil, { clock = clock.fn })
    clock.now = clock.now + 1
    c.add(10)
    assert.is_nil(events[2].total)
    assert.is_nil(events[2].eta)
    c.expect(50)
    c.expect(50)
    c.finish("failed")
    assert.equal(100, events[3].total)
  end)
end)

describe("pht.progress.renderer", function()
  local function ev(t) return { step = "write_image", done = t.done, total = t.total, elapsed = t.elapsed,
    rate = t.rate or 1048576, eta = t.eta, final = t.final, status = t.final and "ok" or nil } end

  it("auto on a terminal redraws one line with \\r and clears it at the step's end", function()
    local out = sink()
    local render, clear = progress.renderer("auto", { stream = out, terminal = true })
    render(ev({ done = 1048576, total = 3145728, elapsed = 1, eta = 2 }))
    render(ev({ done = 2097152, total = 3145728, elapsed = 2, eta = 1 }))
    assert.equal("\rwrite_image  1.0 MiB / 3.0 MiB  33%  1.0 MiB/s  0:02 left\27[K"
      .. "\rwrite_image  2.0 MiB / 3.0 MiB  66%  1.0 MiB/s  0:01 left\27[K", out.text)
    clear()
    assert.equal("\r\27[K", out.text:sub(-4))
    local n = #out.text
    clear()                           -- nothing shown: nothing to clear
    assert.equal(n, #out.text)
    render(ev({ done = 3145728, total = 3145728, elapsed = 3 }))
    render(ev({ done = 3145728, total = 3145728, elapsed = 3, final = true }))
    assert.equal("\r\27[K", out.text:sub(-4))
    assert.is_nil(out.text:find("\n", 1, true))
  end)

  it("auto writes nothing when stderr is not a terminal, none never", function()
    assert.is_nil(progress.renderer("auto", { stream = sink(), terminal = false }))
    assert.is_nil(progress.renderer("none", { stream = sink(), terminal = true }))
  end)

  it("plain writes a line every interval and one at the end", function()
    local out = sink()
    local render = progress.renderer("plain", { stream = out, prefix = "pht post-run", interval = 5 })
    for t = 0, 12 do render(ev({ done = t * 1048576, total = 12 * 1048576, elapsed = t })) end
    render(ev({ done = 12 * 1048576, total = 12 * 1048576, elapsed = 12.5, final = true }))
    local lines = {}
    for l in out.text:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    assert.same({
      "pht post-run: write_image  5.0 MiB / 12.0 MiB  41%  1.0 MiB/s",
      "pht post-run: write_image  10.0 MiB / 12.0 MiB  83%  1.0 MiB/s",
      "pht post-run: write_image  12.0 MiB / 12.0 MiB  100%  1.0 MiB/s  in 0:13",
    }, lines)
  end)

  it("json writes each event as one object a line", function()
    local out = sink()
    local render = progress.renderer("json", { stream = out })
    render(ev({ done = 5, total = 10, elapsed = 0.12345, rate = 40.4, eta = 0.1237 }))
    render(ev({ done = 10, total = 10, elapsed = 0.25, rate = 40, final = true }))
    local lines = {}
    for l in out.text:gmatch("([^\n]*)\n") do lines[#lines + 1] = assert(dkjson.decode(l)) end
    assert.equal(2, #lines)
    assert.same({ step = "write_image", done = 5, total = 10, elapsed = 0.123, rate = 40, eta = 0.124 }, lines[1])
    assert.is_true(lines[2].final)
    assert.equal("ok", lines[2].status)
  end)

  it("refuses a mode it does not know, naming the modes", function()
    local render, err = progress.renderer("fancy")
    assert.is_nil(render)
    assert.matches("--progress takes auto, plain, json, none, not fancy", err, 1, true)
  end)
end)

describe("the progress functions of images and writers", function()
  -- The bytes each call reported, and how many calls.
  local function tally()
    local t = { bytes = 0, calls = 0 }
    t.fn = function(n)
      assert.equal("number", type(n))
      t.bytes, t.calls = t.bytes + n, t.calls + 1
    end
    return t
  end

  local function archive_with(size)
    local dir = helpers.tmpdir()
    helpers.run("head -c " .. size .. " /dev/urandom > " .. q(dir .. "/data.bin"))
    local _, ref = S.copy_stage(0)
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer({}))
    assert(w:add_file("/opt/pht_results/data.bin", dir .. "/data.bin"))
    assert(w:commit(ref, { history = "data" }))
    img:close()
    return ref, dir
  end

  it("an open reports the layer bytes it reads, and only the open", function()
    local ref = archive_with(3 * 1024 * 1024)
    local t = tally()
    local img = assert(pht.open_image(ref, { progress = t.fn, verify_layers = true }))
    local blobs = 0
    for _, l in ipairs(img:layers()) do blobs = blobs + l.size end
    assert.is_true(t.bytes > 3 * 1024 * 1024, t.bytes)
    assert.is_true(t.bytes <= blobs, t.bytes .. " > " .. blobs)
    local before = t.calls
    assert(img:extract("/opt/pht_results", helpers.tmpdir() .. "/x"))
    assert.equal(before, t.calls)
    img:close()
  end)

  it("an extract reports the bytes of the files it writes", function()
    local ref = archive_with(3 * 1024 * 1024 + 5)
    local img = assert(pht.open_image(ref))
    local t = tally()
    img:set_progress(t.fn)
    assert(img:extract("/opt/pht_results", helpers.tmpdir() .. "/x"))
    assert.equal(3 * 1024 * 1024 + 5, t.bytes)
    assert.is_true(t.calls >= 3 * 1024 * 1024 / (64 * 1024))
    img:set_progress(nil)
    assert(img:extract("/opt/pht_results", helpers.tmpdir() .. "/y"))
    assert.equal(3 * 1024 * 1024 + 5, t.bytes)
    img:close()
  end)

  it("a writer reports the bytes of its new layer, then those its commit writes", function()
    local dir = helpers.tmpdir()
    helpers.run("head -c 2000000 /dev/urandom > " .. q(dir .. "/f"))
    local _, ref = S.copy_stage(0)
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer({}))
    local t = tally()
    w:set_progress(t.fn)
    assert(w:add_file("/opt/f", dir .. "/f"))
    -- libarchive hands the layer on in blocks: the last one comes at the commit.
    local added = t.bytes
    assert.is_true(added > 2000000 - 64 * 1024 and added < 2000000 + 64 * 1024, added)
    local out = dir .. "/out.tar"
    assert(w:commit("docker-archive:" .. out, { history = "f" }))
    -- The commit wrote the whole archive (every layer, the config, the manifest).
    local size = assert(io.open(out, "rb")):seek("end")
    assert.is_true(t.bytes - added >= size - 64 * 1024 and t.bytes - added <= size + 64 * 1024,
      (t.bytes - added) .. " vs " .. size)
    img:close()
  end)

  it("a commit into a new OCI layout reports the bytes of every blob it writes", function()
    local dir = helpers.tmpdir()
    helpers.run("head -c 3000000 /dev/urandom > " .. q(dir .. "/f"))
    local _, ref = S.copy_stage(0)
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer({}))
    assert(w:add_file("/opt/f", dir .. "/f"))
    local t = tally()
    w:set_progress(t.fn)
    assert(w:commit("oci:" .. dir .. "/layout:t", { history = "f" }))
    img:close()
    local blobs = 0
    for f in helpers.run("find " .. q(dir .. "/layout/blobs") .. " -type f"):gmatch("[^\n]+") do
      blobs = blobs + assert(io.open(f, "rb")):seek("end")
    end
    -- all blobs but the index, plus the tail of the new layer libarchive held back (under one
    -- of the writer's 128 KiB blocks)
    assert.is_true(t.bytes >= blobs and t.bytes <= blobs + 128 * 1024, t.bytes .. " vs " .. blobs)
  end)

  it("a push to a registry reports what it uploads, a docker:// image what it downloads", function()
    local support = require "support"
    local addr, why = support.registry()
    if not addr then return pending(why) end
    local _, ref = S.copy_stage(0)
    local img = assert(pht.open_image(ref, { tls_verify = false })) -- the commit reaches the registry so
    local w = assert(img:writer({}))
    local data = pht.random(1000000) .. pht.random(500000) -- a layer the registry cannot have yet
    assert(w:add_bytes("/opt/pht_results/r.bin", data))
    local up = tally()
    w:set_progress(up.fn)
    local dest = "docker://" .. addr .. "/" .. support.unique_name("progress") .. ":latest"
    assert(w:commit(dest, { history = "r" }))
    img:close()
    assert.is_true(up.bytes >= #data, tostring(up.bytes))
    local down = tally()
    local pulled = assert(pht.open_image(dest, { tls_verify = false, cache_dir = helpers.tmpdir() .. "/cache",
      progress = down.fn }))
    pulled:set_progress(down.fn)
    assert.equal(data, assert(pulled:read_file("/opt/pht_results/r.bin")))
    assert.is_true(down.bytes >= #data, tostring(down.bytes))
    pulled:close()
  end)

  it("a progress function that raises stops being called and the call still succeeds", function()
    local ref = archive_with(1024 * 1024)
    local img = assert(pht.open_image(ref))
    local calls = 0
    img:set_progress(function() calls = calls + 1 error("boom") end)
    assert.is_true(img:extract("/opt/pht_results", helpers.tmpdir() .. "/x"))
    assert.equal(1, calls)
    assert.has_error(function() img:set_progress(42) end)
    assert.has_error(function() pht.open_image(ref, { progress = 42 }) end, "option progress must be a function")
    img:close()
  end)
end)

describe("ctx:count_bytes", function()
  it("is nil when nobody listens, so a step pays nothing", function()
    local wf = workflow.new("t")
    local got = "unset"
    wf:add("copy", function(ctx) got = ctx:count_bytes(function() error("not called") end) return true end)
    assert.is_true(wf:run(workflow.context()))
    assert.is_nil(got)
  end)

  it("sends the step's events to options.progress, the last one when the step ends", function()
    local events = {}
    local wf = workflow.new("t")
    wf:add("copy", function(ctx)
      local add = ctx:count_bytes(10)
      assert.equal(add, ctx:count_bytes(5))
      add(7)
      add(8)
      return true
    end)
    wf:add("fail", function(ctx)
      ctx:count_bytes()(3)
      return nil, "no"
    end)
    local ok = wf:run(workflow.context({ options = { progress = function(e) events[#events + 1] = e end } }))
    assert.is_nil(ok)
    local last = {}
    for _, e in ipairs(events) do last[e.step] = e end
    assert.same({ 15, 15, true, "ok", "t" }, { last.copy.done, last.copy.total, last.copy.final, last.copy.status,
      last.copy.workflow })
    assert.same({ 3, "failed" }, { last.fail.done, last.fail.status })
    assert.is_true(events[#events].final)
  end)

  it("logs a callback that raises once and never fails the step", function()
    local warnings = {}
    local wf = workflow.new("t")
    wf:add("copy", function(ctx) ctx:count_bytes(1)(1) return true end)
    local ctx = workflow.context({ options = { progress = function() error("boom") end },
      logger = function(level, msg) if level == "warn" then warnings[#warnings + 1] = msg end end })
    assert.is_true(wf:run(ctx))
    assert.equal(1, #warnings)
    assert.matches("progress callback failed: .*boom", warnings[1])
  end)
end)

-- A train at station_2's turn whose results (from station_1's run) are
-- tens of MB: pre-run and post-run at station_1 with a stand-in run in
-- between. Made once.
local BIG = 24 * 1024 * 1024
local train
local function big_train()
  if train then return train end
  local dir = helpers.tmpdir()
  local path, ref = S.copy_stage(0)
  local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))
  assert.equal(0, code, err)
  helpers.run("head -c " .. BIG .. " /dev/urandom > " .. q(dir .. "/big.bin"))
  helpers.write(dir .. "/small.txt", "small\n")
  S.tamper(ref, function(w)
    assert(w:add_dir("/opt/pht_results", { opaque = true }))
    assert(w:add_file("/opt/pht_results/big.bin", dir .. "/big.bin"))
    assert(w:add_file("/opt/pht_results/small.txt", dir .. "/small.txt"))
  end, "stand-in run")
  train = { path = path, ref = ref, dir = dir }
  return train
end

-- post-run at station_1 of the big train into a new archive with `args`,
-- stderr not a terminal. Returns the exit code and stderr.
local function post_run(args)
  local t = big_train()
  local out = helpers.tmpdir() .. "/out.tar"
  local code, stdout, err = S.pht("post-run " .. q(t.ref) .. " --output " .. q("docker-archive:" .. out) .. " "
    .. S.station_args(1) .. " " .. args)
  assert.equal("", stdout)
  return code, err
end

describe("pht --progress", function()
  it("auto on a terminal shows an updating line with \\r, cleared at each step's end", function()
    local t = big_train()
    local dir = helpers.tmpdir()
    local out = dir .. "/out.tar"
    local cmd = q(S.bin) .. " post-run " .. q(t.ref) .. " --output " .. q("docker-archive:" .. out) .. " "
      .. S.station_args(1)
    assert.is_true(helpers.sh("script -qfec " .. q(cmd) .. " /dev/null >" .. q(dir .. "/screen") .. " 2>&1"))
    local screen = helpers.read(dir .. "/screen")
    -- A redraw: "\r" that does not end a line (the terminal turns "\n" into "\r\n").
    local redraw = screen:match("\r(encrypt_files[^\r\n]*)")
    assert.truthy(redraw, screen)
    assert.matches("^encrypt_files  [%d.]+ [KMG]?i?B / 24%.0 MiB  %d+%%  [%d.]+ [KMG]?i?B/s", redraw)
    assert.matches("\r%[K", screen:gsub("\27", ""), 1)
    assert.matches("\rwrite_image  ", screen, 1, true)
    assert.matches("station station_1 signed and encrypted the results", screen, 1, true)
    assert.truthy(pht.open_image("docker-archive:" .. out))
  end)

  it("without a terminal and without --progress writes nothing but the step lines", function()
    local code, err = post_run("")
    assert.equal(0, code, err)
    assert.is_nil(err:find("\r", 1, true))
    assert.is_nil(err:find("MiB", 1, true))
    for line in err:gmatch("[^\n]+") do
      assert.truthy(line:match("^pht post%-run: %[%d+/%d+%] [%w_]+$") or line:match("^pht post%-run: station ")
        or line:match("^pht post%-run: [%w_]+: skipped %("), line)
    end
  end)

  it("none writes nothing extra on a terminal either", function()
    local t = big_train()
    local dir = helpers.tmpdir()
    local cmd = q(S.bin) .. " post-run -q " .. q(t.ref) .. " --output " .. q("docker-archive:" .. dir .. "/o.tar")
      .. " " .. S.station_args(1) .. " --progress=none"
    assert.is_true(helpers.sh("script -qfec " .. q(cmd) .. " /dev/null >" .. q(dir .. "/screen") .. " 2>&1"))
    assert.equal("", helpers.read(dir .. "/screen"))
  end)

  it("plain writes lines a log can keep, ending with each long step's total", function()
    local code, err = post_run("-q --progress plain")
    assert.equal(0, code, err)
    assert.is_nil(err:find("\r", 1, true))
    local seen = {}
    for line in err:gmatch("[^\n]+") do
      local step, done, total = line:match("^pht post%-run: ([%w_]+)  ([%d.]+ %a+) / ([%d.]+ %a+)  %d+%%  [%d.]+ %a+/s")
      if not step then -- no total: open_image
        step, done = line:match("^pht post%-run: ([%w_]+)  ([%d.]+ %a+)  [%d.]+ %a+/s")
      end
      assert.truthy(step, line)
      seen[step] = { done = done, total = total }
    end
    -- e_d is taken in encrypt_files' one pass, which reads the results once, where the
    -- image holds them (a plain layer): read_results has nothing to move
    for _, step in ipairs({ "open_image", "encrypt_files", "write_image" }) do
      assert.truthy(seen[step], step .. " missing in:\n" .. err)
    end
    assert.is_nil(seen.read_results)
    assert.is_nil(seen.hash_results)
    assert.same({ done = "24.0 MiB", total = "24.0 MiB" }, seen.encrypt_files)
  end)

  it("json writes one object a line whose done never decreases and ends at the total", function()
    local code, err = post_run("--progress=json") -- no step lines between them: json implies -q
    assert.equal(0, code, err)
    local by_step, order = {}, {}
    for line in err:gmatch("[^\n]+") do
      local ev = assert(dkjson.decode(line), line)
      assert.equal("post-run", ev.workflow)
      if not by_step[ev.step] then
        by_step[ev.step] = {}
        order[#order + 1] = ev.step
      end
      table.insert(by_step[ev.step], ev)
    end
    assert.is_nil(by_step.read_results, "the results are read in place, by encrypt_files alone")
    for _, step in ipairs({ "encrypt_files" }) do
      local list = assert(by_step[step], step .. " missing in:\n" .. err)
      assert.equal(0, list[1].done)
      for i = 2, #list do assert.is_true(list[i].done >= list[i - 1].done, step) end
      local last = list[#list]
      assert.is_true(last.final)
      assert.equal("ok", last.status)
      assert.equal(last.total, last.done)
      assert.is_true(last.done >= BIG)
    end
  end)

  -- post-run of the big train in the daemon with --progress json (env added
  -- to the daemon's): the final event of every step.
  local function daemon_finals(extra_env)
    local D = require "daemon_support"
    local support = require "support"
    local t = big_train()
    local name = support.unique_name("progress") .. ":latest"
    finally(function() D.rmi(name) end)
    local img = assert(pht.open_image(t.ref))
    assert(img:retag("docker-daemon:" .. name))
    img:close()
    local env = D.env()
    for k, v in pairs(extra_env) do env[k] = v end
    local code, out, err = S.pht("post-run -q " .. q("docker-daemon:" .. name) .. " " .. S.station_args(1)
      .. " --progress json", env)
    assert.equal(0, code, err)
    assert.equal("", out)
    local finals = {}
    for line in err:gmatch("[^\n]+") do
      local ev = assert(dkjson.decode(line), line)
      if ev.final then finals[#finals + 1] = ev end
    end
    return finals, err
  end

  -- The bytes the steps before the results are read count (the landing of /opt).
  local function landed_bytes(finals)
    local landed = 0
    for _, ev in ipairs(finals) do
      if ev.step == "write_image" then break end
      if ev.step ~= "read_results" and ev.step ~= "hash_results" and ev.step ~= "encrypt_files" then
        landed = landed + ev.done
      end
    end
    return landed
  end

  local function step_done(finals, step)
    for _, ev in ipairs(finals) do if ev.step == step then return ev.done end end
  end

  it("json on a docker-daemon image read through the engine counts the landing of /opt and the docker load", function()
    local D = require "daemon_support"
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local finals, err = daemon_finals({ PHT_DOCKER_STORE = "0" })
    -- The daemon sends /opt when a step first reads it; that step counts it.
    assert.is_true(landed_bytes(finals) >= BIG, err)
    local write = finals[#finals]
    assert.equal("write_image", write.step)
    assert.is_true(write.done >= BIG, err)
  end)

  it("json on a docker-daemon image read from the engine's store counts the results where they are read", function()
    local D = require "daemon_support"
    local ok, why = D.store_ready()
    if not ok then return pending(why) end
    local finals, err = daemon_finals({})
    -- nothing of /opt is copied to land it: the bytes count once, as encrypt_files reads them
    assert.is_true(landed_bytes(finals) < BIG, err)
    assert.is_true(step_done(finals, "encrypt_files") >= BIG, err)
    local write = finals[#finals]
    assert.equal("write_image", write.step)
    assert.is_true(write.done >= BIG, err)
  end)

  it("json on pht inspect reports its open on stderr and leaves stdout to the report", function()
    local t = big_train()
    local code, out, err = S.pht("inspect --json --verify-layers " .. q(t.ref) .. " --progress=json")
    assert.is_true(code == 0 or code == 1, err)
    assert.equal("table", type(dkjson.decode(out)))
    local last
    for line in err:gmatch("[^\n]+") do
      last = assert(dkjson.decode(line), line)
      assert.same({ "inspect", "open_image" }, { last.workflow, last.step })
    end
    assert.is_true(last.final)
    assert.is_true(last.done >= BIG, err)
  end)

  it("json on pht build and on pht decrypt-results counts the train's and the results' bytes", function()
    local support = require "support"
    local dir = helpers.tmpdir()
    helpers.run("mkdir -p " .. q(dir .. "/files") .. " && head -c 3000000 /dev/urandom > " .. q(dir .. "/files/model.bin"))
    helpers.write(dir .. "/files/entrypoint.sh", "#!/bin/sh\n")
    local out = "docker-archive:" .. dir .. "/train.tar:pht/p:latest"
    local code, stdout, err = S.pht("build --files " .. q(dir .. "/files") .. " --station "
      .. q("station_1=" .. helpers.key_path("station_1"):gsub("%.pem$", ".pub.pem")) .. " --creator-id 1 --creator-key "
      .. q(S.key("user")) .. " --base " .. q("docker-archive:" .. assert(support.base_image())) .. " --output "
      .. q(out) .. " --progress=json")
    assert.equal(0, code, err)
    assert.equal("", stdout)
    local final = {}
    for line in err:gmatch("[^\n]+") do
      local ev = assert(dkjson.decode(line), line)
      assert.equal("build", ev.workflow)
      if ev.final then final[ev.step] = ev end
    end
    for _, step in ipairs({ "compute_immutable_hash", "encrypt_files" }) do
      assert.truthy(final[step], step .. " in:\n" .. err)
      assert.is_true(final[step].done >= 3000000 and final[step].done == final[step].total, step)
    end
    assert.is_true(final.write_image.done >= 3000000, err)

    -- the results of the big train after station_1's post-run, for the creator
    local t = big_train()
    local sealed = helpers.tmpdir() .. "/sealed.tar"
    code, _, err = S.pht("post-run -q " .. q(t.ref) .. " --output " .. q("docker-archive:" .. sealed) .. " "
      .. S.station_args(1))
    assert.equal(0, code, err)
    code, stdout, err = S.pht("decrypt-results " .. q("docker-archive:" .. sealed) .. " --key " .. q(S.key("user"))
      .. " --out " .. q(helpers.tmpdir() .. "/results") .. " --progress json")
    assert.equal(0, code, err)
    final = {}
    for line in err:gmatch("[^\n]+") do
      local ev = assert(dkjson.decode(line), line)
      if ev.final then final[ev.step] = ev end
    end
    assert.is_true(final.decrypt_results.done >= 2 * BIG, err)
    assert.is_true(final.verify_result_hash.done >= BIG, err)
  end)

  it("refuses an unknown mode as a usage error", function()
    local code, err = post_run("--progress=fancy")
    assert.equal(2, code)
    assert.matches("--progress takes auto, plain, json, none, not fancy", err, 1, true)
  end)
end)
