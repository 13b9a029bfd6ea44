-- Trains kept in the Docker daemon, as stations keep them: a three-station
-- route built into the daemon and driven there (pre-run in place, a real
-- `docker run` of the train whose entrypoint writes the results, `docker
-- commit`, post-run --rebase), the creator decrypting what came home, and the
-- reference's trains loaded with `docker load` passing pre-run by name. The
-- route names its images as a station does, a bare REPO:TAG; the reference
-- trains go by docker-daemon:REPO:TAG. The docker CLI is the oracle: image
-- ids, `docker save` read with tar, containers and dangling images left over.
local helpers = require "helpers"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"

local q = helpers.q

-- The plaintext the train's entrypoint writes; no layer may hold it after post-run.
local SECRET = "pht-daemon-route: counted rows"

local ENTRYPOINT = [[#!/bin/sh
set -e
mkdir -p /opt/pht_results/log
n=$(cat /opt/pht_results/count.txt 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /opt/pht_results/count.txt
echo "visit $n: ]] .. SECRET .. [[ $((n * 1000))" >> /opt/pht_results/log/visits.txt
]]

-- Every layer of the image as `docker save` writes it; fails if one holds needle.
local function assert_no_layer_holds(name, needle)
  local layers = S.layers(D.save(name), name)
  for i, l in ipairs(layers) do
    assert.is_nil(helpers.read(l.path):find(needle, 1, true), "layer " .. i .. " of " .. name .. " holds plaintext")
  end
  return layers
end

describe("a three-station route on the Docker daemon", function()
  local t -- the route's state, made by the first spec that runs

  local function prepare()
    if t then return t end
    local base = assert(support.load_base_image())
    t = { dir = helpers.tmpdir(), repo = support.unique_name("daemon-route"), dangling = D.dangling() }
    t.latest, t.base = t.repo .. ":latest", t.repo .. ":base"
    for _, who in ipairs({ "creator", "s1", "s2", "s3" }) do
      assert.equal(0, (S.pht("keygen --out " .. q(t.dir .. "/" .. who))))
    end
    helpers.run("mkdir -p " .. q(t.dir .. "/files"))
    helpers.write(t.dir .. "/files/entrypoint.sh", ENTRYPOINT)
    local route = ""
    for i = 1, 3 do route = route .. " --station " .. q("s" .. i .. "=" .. t.dir .. "/s" .. i .. ".pub.pem") end
    -- built straight into the daemon: REPO:latest, and REPO:base on the base image
    local code, _, err = S.pht("build -q --files " .. q(t.dir .. "/files") .. route
      .. " --creator-id 7 --creator-key " .. q(t.dir .. "/creator.pem")
      .. " --base " .. q(base) .. " --output " .. q(t.latest), D.env())
    assert.equal(0, code, err)
    assert.equal(D.id(base), D.id(t.base))
    t.base_layers = #S.layers(D.save(t.base), t.base)
    return t
  end

  teardown(function()
    if not t then return end
    for i = 1, 3 do support.docker("rm -f " .. q(t.repo .. "-run" .. i)) end
    D.rmi(t.latest, t.base)
  end)

  for i = 1, 3 do
    it("station s" .. i .. ": pre-run decrypts in place, the train runs, post-run --rebase seals the results", function()
      local ok, why = D.ready(true)
      if not ok then return pending(why) end
      prepare()
      local ref = t.latest -- a bare NAME:TAG is an image in the daemon, as the reference takes it
      local station = " --station s" .. i .. " --key " .. q(t.dir .. "/s" .. i .. ".pem")
      local before = assert(D.id(t.latest))

      local code, _, err = S.pht("pre-run -q " .. q(ref) .. station, D.env())
      assert.equal(0, code, err)
      local decrypted = assert(D.id(t.latest))
      assert.are_not.equal(before, decrypted)
      assert.is_nil(D.id(before), "the image the tag named before pre-run is still there")
      local history = D.docker("history --no-trunc --format '{{.CreatedBy}}' " .. q(t.latest))
      assert.equal("libpht pre-run", history:match("^[^\n]*"))

      local container = t.repo .. "-run" .. i
      D.docker("run --name " .. q(container) .. " --network none " .. q(t.latest)
        .. " /bin/sh /opt/pht_train/entrypoint.sh")
      D.docker("commit " .. q(container) .. " " .. q(t.latest))
      D.docker("rm " .. q(container))
      local ran = assert(D.id(t.latest))
      local found = false -- a control for the scan after post-run
      for _, l in ipairs(S.layers(D.save(t.latest), t.latest)) do
        found = found or helpers.read(l.path):find(SECRET, 1, true) ~= nil
      end
      assert.is_true(found, "the run's layer should hold the plaintext results")

      code, _, err = S.pht("post-run -q " .. q(ref) .. station .. " --rebase", D.env())
      assert.equal(0, code, err)
      assert.is_nil(D.id(ran), "the image docker commit made is still there")
      assert.is_nil(D.id(decrypted), "the plaintext image pre-run wrote is still there")
      local layers = assert_no_layer_holds(t.latest, SECRET)
      assert.equal(t.base_layers + 1, #layers)
      assert.equal("libpht post-run", layers[#layers].history.created_by)
      assert.same({}, D.containers(t.repo))
      assert.same({}, D.new_dangling(t.dangling))
    end)
  end

  it("the creator decrypts the results of the three visits from the daemon", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    local out = t.dir .. "/results"
    local code, _, err = S.pht("decrypt-results -q " .. q(t.latest) .. " --key "
      .. q(t.dir .. "/creator.pem") .. " --out " .. q(out), D.env())
    assert.equal(0, code, err)
    assert.equal("3\n", helpers.read(out .. "/count.txt"))
    assert.equal("visit 1: " .. SECRET .. " 1000\nvisit 2: " .. SECRET .. " 2000\nvisit 3: " .. SECRET
      .. " 3000\n", helpers.read(out .. "/log/visits.txt"))
  end)

  it("leaves no container and no dangling image in the daemon", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    prepare()
    assert.same({}, D.containers(t.repo))
    assert.same({}, D.new_dangling(t.dangling))
    D.rmi(t.latest, t.base)
    assert.is_nil(D.id(t.latest))
    assert.same({}, D.new_dangling(t.dangling))
  end)
end)

describe("the reference's trains in the daemon", function()
  local expected = S.expected()

  for n = 0, 2 do
    local station = "station_" .. (n + 1)
    it("stage " .. n .. ", loaded with docker load, passes pre-run by name for " .. station, function()
      local ok, why = D.ready(false)
      if not ok then return pending(why) end
      local repo = support.unique_name("daemon-ref")
      local tag = D.load_stage(S.stages[n], repo)
      finally(function() D.rmi(tag) end)
      local dangling = D.dangling()
      local before = assert(D.id(tag))
      local code, _, err = S.pht("pre-run -q " .. q("docker-daemon:" .. tag) .. " " .. S.station_args(n + 1), D.env())
      assert.equal(0, code, err)
      assert.are_not.equal(before, D.id(tag))
      local layers = S.layers(D.save(tag), tag)
      local top = layers[#layers]
      assert.equal("libpht pre-run", top.history.created_by)
      local dir = S.untar(top.path)
      assert.equal(expected.entrypoint, helpers.read(dir .. "/opt/pht_train/entrypoint.sh"))
      if n > 0 then
        for p, content in pairs(S.results_after(n)) do
          assert.equal(content, helpers.read(dir .. "/opt/pht_results/" .. p), p)
        end
      end
      assert.same({}, D.new_dangling(dangling))
    end)
  end
end)
