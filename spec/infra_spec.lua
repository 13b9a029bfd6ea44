-- The services the suite relies on are really there: a Docker engine that
-- loads and runs the base image, a registry that stores and serves it, and a
-- base image that docker, skopeo and umoci all accept. A service named in
-- PHT_TEST_REQUIRE (tools/test.sh requires all of them) that is missing fails
-- here, so a broken setup shows instead of every other spec going pending.
local helpers = require "helpers"
local support = require "support"
local q = helpers.q

-- Go on when the service is up; otherwise fail if this run requires it, or
-- mark the spec pending with the reason.
local function need(service, ok, why)
  if ok then return true end
  if support.required(service) then
    error(service .. " is required (PHT_TEST_REQUIRE) but unavailable: " .. tostring(why), 2)
  end
  pending(why)
end

-- The manifest.json of a docker-archive, parsed just enough: config name and
-- layer paths.
local function archive_manifest(path)
  local m = helpers.run("tar -xOf " .. q(path) .. " manifest.json")
  local config = m:match('"Config"%s*:%s*"([^"]+)"')
  local layers = {}
  for l in (m:match('"Layers"%s*:%s*%[(.-)%]') or ""):gmatch('"([^"]+)"') do
    layers[#layers + 1] = l
  end
  return config, layers, m
end

describe("test base image", function()
  it("is a docker-archive whose config is named by its sha256", function()
    local path = assert(support.base_image())
    local config = archive_manifest(path)
    assert.is_truthy(config, "manifest.json names no config")
    local dir = helpers.tmpdir()
    helpers.run("tar -xf " .. q(path) .. " -C " .. q(dir))
    assert.are.equal(config:match("^(%x+)%.json$"), helpers.sha256_file(dir .. "/" .. config))
  end)

  it("lists each layer's sha256 as a diff_id in its config", function()
    local path = assert(support.base_image())
    local config, layers = archive_manifest(path)
    local dir = helpers.tmpdir()
    helpers.run("tar -xf " .. q(path) .. " -C " .. q(dir))
    local cfg = helpers.read(dir .. "/" .. config)
    local diff_ids = {}
    for id in (cfg:match('"diff_ids"%s*:%s*%[(.-)%]') or ""):gmatch('"sha256:(%x+)"') do
      diff_ids[#diff_ids + 1] = id
    end
    assert.are.equal(1, #layers)
    assert.are.same({ helpers.sha256_file(dir .. "/" .. layers[1]) }, diff_ids)
  end)

  it("holds a static busybox and the sh, cat, echo, mkdir and seq applets", function()
    local path = assert(support.base_image())
    local _, layers = archive_manifest(path)
    local list = helpers.run("tar -xOf " .. q(path) .. " " .. q(layers[1]) .. " | tar -tv")
    assert.is_truthy(list:match("\n%-rwxr%-xr%-x 0/0%s+%d+ [^\n]* bin/busybox\n"), list)
    for _, applet in ipairs({ "sh", "cat", "echo", "mkdir", "seq" }) do
      assert.is_truthy(list:find(" bin/" .. applet .. " -> busybox\n", 1, true), applet)
    end
    assert.is_truthy(list:match("\ndrwxrwxrwt 0/0%s+0 [^\n]* tmp/\n"), "no world-writable /tmp")
    assert.is_truthy(list:match("\ndrwxr%-xr%-x 0/0%s+0 [^\n]* opt/\n"), "no /opt")
  end)

  it("is built byte for byte the same twice", function()
    local dir = helpers.tmpdir()
    local mk = q(helpers.root .. "/tools/make-base-image.sh")
    helpers.run(mk .. " -o " .. q(dir .. "/a.tar"))
    helpers.run(mk .. " -o " .. q(dir .. "/b.tar"))
    assert.are.equal(helpers.sha256_file(dir .. "/a.tar"), helpers.sha256_file(dir .. "/b.tar"))
  end)

  it("writes a relative -o and --oci where the caller runs it, not in the source tree", function()
    local dir = helpers.tmpdir()
    local mk = q(helpers.root .. "/tools/make-base-image.sh")
    local printed = helpers.stdout("cd " .. q(dir) .. " && " .. mk .. " -o base.tar --oci layout")
    assert.is_true(helpers.sh("test -s " .. q(dir .. "/base.tar")))
    assert.is_true(helpers.sh("test -s " .. q(dir .. "/layout/index.json")))
    assert.is_false(helpers.sh("test -e " .. q(helpers.root .. "/base.tar")))
    assert.matches(dir .. "/base.tar", printed, 1, true)
  end)

  it("is read by skopeo with the layer digest the archive names", function()
    local path = assert(support.base_image())
    local _, layers = archive_manifest(path)
    local out = helpers.stdout("skopeo inspect " .. q("docker-archive:" .. path))
    assert.is_truthy(out:find('"sha256:' .. layers[1]:match("^(%x+)/"), 1, true), out)
  end)

  it("converts to an OCI layout that umoci unpacks into a runnable rootfs", function()
    local layout = assert(support.base_image_oci())
    local dir = helpers.tmpdir()
    helpers.run("cp -a " .. q(layout) .. " " .. q(dir .. "/oci"))
    local rootless = helpers.run("id -u"):match("^0") and "" or " --rootless"
    helpers.run("umoci unpack" .. rootless .. " --image " .. q(dir .. "/oci:latest") .. " " .. q(dir .. "/bundle"))
    assert.are.equal("ok\n", helpers.run(q(dir .. "/bundle/rootfs/bin/sh") .. " -c 'echo ok'"))
    helpers.run("rm -rf " .. q(dir))
  end)
end)

describe("test Docker engine", function()
  it("answers docker info on the endpoint the suite exports", function()
    if not need("docker", support.docker_available()) then return end
    local out = helpers.stdout(support.docker_cmd("info --format '{{.ServerVersion}}'"))
    assert.is_truthy(out:match("^%d+%.%d+"), out)
    local sock = support.docker_socket()
    if sock then assert.is_true((helpers.sh("test -S " .. q(sock)))) end
  end)

  it("loads the base image archive under its tag and config digest", function()
    if not need("docker", support.docker_available()) then return end
    local path, tag = assert(support.base_image())
    local config = archive_manifest(path)
    local out = helpers.stdout(support.docker_cmd("load --input " .. q(path)))
    assert.is_truthy(out:find("Loaded image: " .. tag, 1, true), out)
    local id = helpers.stdout(support.docker_cmd("image inspect --format '{{.Id}}' " .. q(tag)))
    assert.are.equal("sha256:" .. config:match("^(%x+)"), id:match("^(%S+)"))
  end)

  it("runs echo ok in a container of the base image", function()
    if not need("docker", support.docker_available()) then return end
    local tag = assert(support.load_base_image())
    local name = support.unique_name("infra")
    local out = helpers.stdout(support.docker_cmd("run --rm --network none --name " .. q(name) .. " "
      .. q(tag) .. " /bin/sh -c 'echo ok'"))
    assert.are.equal("ok\n", out)
    local left = helpers.stdout(support.docker_cmd("ps -aq --filter " .. q("name=" .. name)))
    assert.are.equal("", left)
  end)
end)

describe("test registry", function()
  it("answers GET /v2/ with 200", function()
    local addr, why = support.registry()
    if not need("registry", addr, why) then return end
    local code = helpers.run("curl -s -o /dev/null -w '%{http_code}' " .. q("http://" .. addr .. "/v2/"))
    assert.are.equal("200", code)
  end)

  it("stores an image pushed by skopeo and serves its config back byte for byte", function()
    local addr, why = support.registry()
    if not need("registry", addr, why) then return end
    local path = assert(support.base_image())
    local config = archive_manifest(path)
    local digest = config:match("^(%x+)")
    local repo = support.unique_name("infra")
    local ref = addr .. "/" .. repo .. ":1"
    helpers.run("skopeo copy --quiet --dest-tls-verify=false " .. q("docker-archive:" .. path)
      .. " " .. q("docker://" .. ref))
    local manifest = helpers.stdout("skopeo inspect --raw --tls-verify=false " .. q("docker://" .. ref))
    assert.is_truthy(manifest:find('"sha256:' .. digest .. '"', 1, true), manifest)
    local dir = helpers.tmpdir()
    helpers.run("curl -fsS -o " .. q(dir .. "/config") .. " "
      .. q("http://" .. addr .. "/v2/" .. repo .. "/blobs/sha256:" .. digest))
    assert.are.equal(digest, helpers.sha256_file(dir .. "/config"))
  end)
end)

describe("test TLS registries", function()
  local function curl(args)
    return helpers.run("curl -s -o /dev/null -w '%{http_code}' --max-time 10 " .. args)
  end

  it("serves GET /v2/ over TLS with a certificate of the test CA", function()
    local svc, why = support.registry_service("tls")
    if not need("registry-tls", svc, why) then return end
    assert.are.equal("200", curl("--cacert " .. q(svc.ca) .. " " .. q("https://" .. svc.addr .. "/v2/")))
    local ok = helpers.sh("curl -fsS -o /dev/null --max-time 10 " .. q("https://" .. svc.addr .. "/v2/"))
    assert.is_false(ok, "the test CA must not be trusted by default")
  end)

  it("wants basic auth for the robot account and refuses a wrong password", function()
    local svc, why = support.registry_service("basic")
    if not need("registry-basic", svc, why) then return end
    local url = q("https://" .. svc.addr .. "/v2/")
    local ca = "--cacert " .. q(svc.ca) .. " "
    assert.are.equal("robot$station_2", svc.user)
    assert.are.equal("401", curl(ca .. url))
    assert.are.equal("200", curl(ca .. "-u " .. q(svc.user .. ":" .. svc.password) .. " " .. url))
    assert.are.equal("401", curl(ca .. "-u " .. q(svc.user .. ":wrong") .. " " .. url))
  end)

  it("takes skopeo's push with a token from the token service, per the user's scopes", function()
    local svc, why = support.registry_service("token")
    if not need("registry-token", svc, why) then return end
    local hdr = helpers.run("curl -s -D - -o /dev/null --cacert " .. q(svc.ca) .. " "
      .. q("https://" .. svc.addr .. "/v2/"))
    assert.is_truthy(hdr:find('Bearer realm="' .. svc.realm .. '",service="' .. svc.service .. '"', 1, true), hdr)
    local user, project = "robot$" .. support.unique_name("infra"), support.unique_name("project")
    local file = support.token_user(svc, user, { password = "pw-infra",
      access = { [project .. "/*"] = { "pull", "push" } } })
    finally(function() os.remove(file) end)
    local path = assert(support.base_image())
    local ref = q("docker://" .. svc.addr .. "/" .. project .. "/train:1")
    local opts = " --cert-dir " .. q(svc.cert_dir) .. " --creds " .. q(user .. ":pw-infra") .. " "
    helpers.run("skopeo copy --quiet --dest-cert-dir " .. q(svc.cert_dir) .. " --dest-creds "
      .. q(user .. ":pw-infra") .. " " .. q("docker-archive:" .. path) .. " " .. ref)
    local raw = helpers.run("skopeo inspect --raw" .. opts .. ref)
    assert.is_truthy(raw:find('"schemaVersion"', 1, true), raw)
    local ok, out = helpers.sh("skopeo inspect --raw --cert-dir " .. q(svc.cert_dir) .. " --creds "
      .. q(user .. ":pw-infra") .. " " .. q("docker://" .. svc.addr .. "/elsewhere/train:1"))
    assert.is_false(ok, out)
  end)
end)
