-- The station image of docker/Dockerfile: libpht as the reference's protocol
-- container. With no image registry reachable and no network for the
-- engine's containers, the Debian 12 base comes from debootstrap with the
-- packages docker/*-packages.txt list already installed, and `docker import`
-- (tools/make-debian-base.sh, its root file system cached); the image is
-- built on it with the legacy builder and no network, its apt-get install
-- finding nothing to do. It then takes a train over the same three-station
-- route as `pht run` does in run_spec.lua, run exactly as station software
-- runs the reference's image: `docker run -e STATION_ID -e PRIVATE_KEY_PATH
-- [-e PRIVATE_KEY_PASSWORD] -v DOCKER_SOCKET:/var/run/docker.sock -v
-- KEY:/opt/private_key.pem IMAGE pre-run|post-run|run REPO:TAG [--rebase]`.
-- Station s2 takes the reference's by-hand round (pre-run, docker run,
-- docker commit, post-run --rebase). Slow the first time (debootstrap, the
-- compile); the rootfs and the built stages stay cached under the tags below.
local helpers = require "helpers"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"

local q = helpers.q

local BASE_TAG = "pht-test/debian:12-libpht"
-- Kept between runs as the build's cache, like the base image.
local IMAGE = "pht-test/libpht-station:latest"
local BUILD_STAGE = "pht-test/libpht-station:build"

local SECRET = "pht-container-spec: counted rows"
local ENTRYPOINT = [[#!/bin/sh
set -e
mkdir -p /opt/pht_results
n=$(cat /opt/pht_results/count.txt 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /opt/pht_results/count.txt
echo "visit $n: ]] .. SECRET .. [[" >> /opt/pht_results/visits.txt
echo "train stdout: visit $n"
]]

-- Whether the base can be had: in the engine, cached, or made (root and debootstrap).
local function base_possible()
  if D.id(BASE_TAG) then return true end
  local cache = os.getenv("PHT_DEBIAN_CACHE") or (helpers.build .. "/cache")
  if helpers.sh("ls " .. q(cache) .. "/debian-12-minbase-*.tar >/dev/null 2>&1") then return true end
  if not helpers.sh("[ \"$(id -u)\" = 0 ] && command -v debootstrap >/dev/null") then
    return false, "needs root and debootstrap (apt-get install debootstrap) to make the Debian 12 base once"
  end
  return true
end

-- The socket of the suite's daemon on this host, for -v SOCKET:/var/run/docker.sock.
local function socket()
  return (assert(support.docker_host():match("^unix://(.+)$"), "the suite's daemon is not on a unix socket"))
end

local built
local function build_image()
  if built then return built end
  local out = helpers.run("cd " .. q(helpers.root) .. " && PHT_BUILD_DIR=" .. q(helpers.build)
    .. " DOCKER_HOST=" .. q(support.docker_host()) .. " tools/make-debian-base.sh --include docker/build-packages.txt"
    .. " --include docker/runtime-packages.txt " .. q(BASE_TAG) .. " 2>&1")
  assert(out:find(BASE_TAG, 1, true), out)
  -- what the tags named before: a rebuild of changed sources leaves them untagged
  local old = { D.id(BUILD_STAGE), D.id(IMAGE) }
  for _, target in ipairs({ "--target build -t " .. q(BUILD_STAGE), "-t " .. q(IMAGE) }) do
    local ok, log = helpers.sh("cd " .. q(helpers.root) .. " && DOCKER_HOST=" .. q(support.docker_host())
      .. " DOCKER_BUILDKIT=0 docker build -q --force-rm --network none --build-arg BASE=" .. q(BASE_TAG)
      .. " -f docker/Dockerfile " .. target .. " . 2>&1")
    assert(ok, "docker build failed:\n" .. tostring(log))
  end
  for _, id in pairs(old) do
    if id ~= D.id(BUILD_STAGE) and id ~= D.id(IMAGE) then support.docker("rmi " .. id) end
  end
  built = IMAGE
  return built
end

-- `docker run` of the station image as station software runs the reference's:
-- ok, stdout, stderr (ok false: stdout and stderr together, stderr).
local function station(t, i, args, password)
  local env = " -e STATION_ID=s" .. i .. " -e PRIVATE_KEY_PATH=/opt/private_key.pem"
  if password then env = env .. " -e PRIVATE_KEY_PASSWORD=" .. q(password) end
  local name = support.unique_name("station")
  return support.docker("run --rm --name " .. q(name) .. env .. " -v " .. q(socket() .. ":/var/run/docker.sock")
    .. " -v " .. q(t.dir .. "/s" .. i .. ".pem:/opt/private_key.pem:ro") .. " " .. q(IMAGE) .. " " .. args)
end

describe("the station image (docker/Dockerfile)", function()
  local t

  local function prepare()
    if t then return t end
    build_image()
    t = { dir = helpers.tmpdir(), repo = support.unique_name("container-route"), dangling = D.dangling() }
    t.latest = t.repo .. ":latest"
    for _, who in ipairs({ "creator", "s1", "s2", "s3" }) do
      local env = who == "s3" and { PHT_SPEC_PW = "s3 secret" } or nil
      assert.equal(0, (S.pht("keygen --out " .. q(t.dir .. "/" .. who)
        .. (env and " --password-env PHT_SPEC_PW" or ""), env)))
    end
    local files = helpers.tmpdir()
    helpers.write(files .. "/entrypoint.sh", ENTRYPOINT)
    local route = ""
    for i = 1, 3 do route = route .. " --station " .. q("s" .. i .. "=" .. t.dir .. "/s" .. i .. ".pub.pem") end
    local code, _, err = S.pht("build -q --files " .. q(files) .. route .. " --creator-id 7 --creator-key "
      .. q(t.dir .. "/creator.pem") .. " --base " .. q(assert(support.load_base_image())) .. " --output "
      .. q(t.latest), D.env())
    assert.equal(0, code, err)
    return t
  end

  local function ready()
    local ok, why = D.ready(true)
    if not ok then return false, why end
    return base_possible()
  end

  teardown(function()
    if t then D.rmi(t.repo .. ":latest", t.repo .. ":base") end
  end)

  it("builds against the packages tools/install-deps.sh installs, and runs on their runtime halves", function()
    local deps = {}
    for p in helpers.run(q(helpers.root .. "/tools/install-deps.sh") .. " --list"):gmatch("[^\n]+") do deps[p] = true end
    for p in helpers.read(helpers.root .. "/docker/build-packages.txt"):gmatch("[^\n]+") do
      assert.is_true(deps[p] ~= nil, p .. " is in docker/build-packages.txt but not in tools/install-deps.sh")
    end
    -- each runtime library is what a -dev package of the build depends on
    local dev = { libssl3 = "libssl-dev", libcjson1 = "libcjson-dev", libarchive13 = "libarchive-dev",
      libcurl4 = "libcurl4-openssl-dev", ["liblua5.4-0"] = "liblua5.4-dev" }
    for p in helpers.read(helpers.root .. "/docker/runtime-packages.txt"):gmatch("[^\n]+") do
      if p ~= "ca-certificates" then
        assert.is_string(dev[p], p)
        local ok, out = helpers.sh("dpkg-query -W -f='${Depends}' " .. q(dev[p]))
        if ok then assert.matches(p:gsub("%p", "%%%0"), out) end
      end
    end
  end)

  it("is a Debian 12 image whose command is pht", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    prepare()
    local ok2, out = support.docker("run --rm --entrypoint cat " .. q(IMAGE) .. " /etc/debian_version")
    assert.is_true(ok2, out)
    assert.matches("^12%.", out)
    local ok3, version = support.docker("run --rm " .. q(IMAGE) .. " --version")
    assert.is_true(ok3, version)
    assert.equal(select(2, S.pht("--version")), version)
  end)

  it("station s1: run REPO:TAG --rebase takes the train through pre-run, the run and post-run", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    prepare()
    local before = assert(D.id(t.latest))
    local ok2, out, err = station(t, 1, "run -v " .. q(t.latest) .. " --rebase")
    assert.is_true(ok2, out)
    local ids = D.run_plaintext_ids(err)
    assert.equal(2, #ids, err)
    for _, id in ipairs(ids) do assert.is_nil(D.id(id), "the plaintext image " .. id .. " is still there") end
    assert.matches("train stdout: visit 1", out, 1, true)
    assert.matches("station s1 ran the train (exit status 0) and sealed the results", err, 1, true)
    assert.are_not.equal(before, D.id(t.latest))
    assert.same({}, D.containers("pht-run-"))
    assert.same({}, D.run_dangling(t.dangling))
  end)

  it("station s2: pre-run REPO:TAG, docker run, docker commit, post-run REPO:TAG --rebase", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    prepare()
    local ok2, out = station(t, 2, "pre-run " .. q(t.latest))
    assert.is_true(ok2, out)
    local history = D.docker("history --no-trunc --format '{{.CreatedBy}}' " .. q(t.latest))
    assert.equal("libpht pre-run", history:match("^[^\n]*"))
    local run = t.repo .. "-run2"
    D.docker("run --name " .. q(run) .. " --network none " .. q(t.latest))
    D.docker("commit " .. q(run) .. " " .. q(t.latest))
    D.docker("rm " .. q(run))
    ok2, out = station(t, 2, "post-run " .. q(t.latest) .. " --rebase")
    assert.is_true(ok2, out)
    history = D.docker("history --no-trunc --format '{{.CreatedBy}}' " .. q(t.latest))
    assert.equal("libpht post-run", history:match("^[^\n]*"))
    assert.same({}, D.run_dangling(t.dangling))
  end)

  it("station s3: run with an encrypted key and PRIVATE_KEY_PASSWORD", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    prepare()
    local before = assert(D.id(t.latest))
    local ok2, out, err = station(t, 3, "run " .. q(t.latest), "wrong")
    assert.is_false(ok2)
    assert.matches("pre-run failed at step load_key", err, 1, true)
    assert.equal(before, D.id(t.latest))
    ok2, out, err = station(t, 3, "run " .. q(t.latest), "s3 secret")
    assert.is_true(ok2, out)
    assert.matches("(stop 3 of 3)", err, 1, true)
    assert.same({}, D.containers("pht-run-"))
    assert.same({}, D.run_dangling(t.dangling))
  end)

  it("brings the creator the results of the three visits, with no plaintext in any layer", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    prepare()
    local out = t.dir .. "/results"
    local code, _, err = S.pht("decrypt-results -q " .. q(t.latest) .. " --key " .. q(t.dir .. "/creator.pem")
      .. " --out " .. q(out), D.env())
    assert.equal(0, code, err)
    assert.equal("3\n", helpers.read(out .. "/count.txt"))
    assert.equal("visit 1: " .. SECRET .. "\nvisit 2: " .. SECRET .. "\nvisit 3: " .. SECRET .. "\n",
      helpers.read(out .. "/visits.txt"))
    for i, l in ipairs(S.layers(D.save(t.latest), t.latest)) do
      assert.is_nil(helpers.read(l.path):find(SECRET, 1, true), "layer " .. i .. " holds plaintext")
    end
  end)
end)
