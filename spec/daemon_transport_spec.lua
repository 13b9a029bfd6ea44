-- docker-daemon: images through pht.open_image and the writer, against the
-- suite's Docker daemon, with the docker CLI as the oracle (`docker image
-- inspect`, `docker run`, `docker history`); the errors for a missing image,
-- a daemon that is not there and a bad name, in Lua and from the pht command.
local helpers = require "helpers"
local pht = require "pht"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"

local q = helpers.q

describe("docker-daemon: images", function()
  it("opens an image by name with the config and layers the daemon reports", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = assert(support.load_base_image())
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    assert.equal("docker-daemon", img:transport())
    assert.equal("docker-daemon:" .. tag, img:reference())
    -- the config is rebuilt from what the engine reports, field by field
    local cfg = S.decode(img:image_config())
    local inspect = S.decode(D.docker("image inspect --format '{{json .}}' " .. q(tag)))
    assert.equal(inspect.Architecture, cfg.architecture)
    assert.equal(inspect.Os, cfg.os)
    assert.same(inspect.Config.Cmd, cfg.config.Cmd)
    assert.same(inspect.Config.Env, cfg.config.Env)
    assert.same(inspect.RootFS.Layers, cfg.rootfs.diff_ids)
    local history = D.docker("history --no-trunc --format '{{.CreatedBy}}' " .. q(tag)):match("^[^\n]*")
    assert.equal(history, img:layers()[#img:layers()].created_by)
    local diff_ids = D.docker("image inspect --format '{{range .RootFS.Layers}}{{.}} {{end}}' " .. q(tag))
    local got = {}
    for _, l in ipairs(img:layers()) do got[#got + 1] = l.diff_id end
    assert.equal(diff_ids:gsub("%s+$", ""), table.concat(got, " "))
    assert.equal("root:x:0:0:root:/root:/bin/sh", (assert(img:read_file("/etc/passwd")):match("^[^\n]*")))
    img:close()
  end)

  it("opens an image by id", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = assert(support.load_base_image())
    local by_id = assert(pht.open_image("docker-daemon:" .. D.id(tag)))
    local by_name = assert(pht.open_image("docker-daemon:" .. tag))
    assert.equal(by_name:image_config(), by_id:image_config())
    assert.equal("symlink", by_id:stat("/bin/sh").type)
    by_id:close()
    by_name:close()
  end)

  it("commits a new image under a new tag that docker run sees, and moves the tag in place", function()
    local ok, why = D.ready(true)
    if not ok then return pending(why) end
    local base = assert(support.load_base_image())
    local tag = support.unique_name("daemon-write") .. ":v1"
    local ref = "docker-daemon:" .. tag
    finally(function() D.rmi(tag) end)
    local dangling = D.dangling()
    local img = assert(pht.open_image("docker-daemon:" .. base))
    local w = assert(img:writer({}))
    assert(w:add_bytes("/opt/one.txt", "one\n"))
    assert(w:commit(ref, { history = "spec one" }))
    img:close()
    assert.equal("one", D.docker("run --rm --network none " .. q(tag) .. " cat /opt/one.txt"):match("^(%w+)"))
    local first = D.id(tag)

    img = assert(pht.open_image(ref))
    w = assert(img:writer({}))
    assert(w:add_bytes("/opt/two.txt", "two\n"))
    assert(w:commit(ref, { history = "spec two" }))
    img:close()
    assert.are_not.equal(first, D.id(tag))
    assert.is_nil(D.id(first))
    assert.equal("one\ntwo\n", D.docker("run --rm --network none " .. q(tag) .. " cat /opt/one.txt /opt/two.txt"))
    local history = D.docker("history --no-trunc --format '{{.CreatedBy}}' " .. q(tag))
    assert.equal("spec two\nspec one\n", history:match("^(spec two\nspec one\n)"))
    assert.same({}, D.new_dangling(dangling))
  end)

  for _, fmt in ipairs({ "gzip", "zstd" }) do
    it("commits an OCI image with " .. fmt .. " layers into the daemon, sending every layer", function()
      local ok, why = D.ready(true)
      if not ok then return pending(why) end
      local base = assert(support.base_image())
      local dir = helpers.tmpdir() .. "/oci"
      helpers.run("skopeo copy --quiet --dest-compress --dest-compress-format " .. fmt .. " "
        .. q("docker-archive:" .. base) .. " " .. q("oci:" .. dir .. ":latest"))
      local tag = support.unique_name("daemon-" .. fmt) .. ":latest"
      finally(function() D.rmi(tag) end)
      local img = assert(pht.open_image("oci:" .. dir .. ":latest"))
      local w = assert(img:writer({}))
      assert(w:add_bytes("/opt/from-oci.txt", fmt .. "\n"))
      assert(w:commit("docker-daemon:" .. tag))
      img:close()
      assert.equal(fmt .. "\n", D.docker("run --rm --network none " .. q(tag) .. " cat /opt/from-oci.txt"))
    end)
  end
end)

describe("docker-daemon: errors", function()
  it("names a missing image once, with the daemon and its 404, ENOTFOUND", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local name = support.unique_name("daemon-missing")
    local ref = "docker-daemon:" .. name .. ":absent"
    local img, err, code = pht.open_image(ref)
    assert.is_nil(img)
    assert.equal("ENOTFOUND", code)
    assert.equal(ref .. ": the Docker daemon at " .. support.docker_host() .. " has no such image (HTTP 404)", err)
    -- and the command says "cannot open" with the reference once
    local c, _, cerr = S.pht("inspect " .. helpers.q(ref), { DOCKER_HOST = support.docker_host() })
    assert.equal(3, c)
    assert.equal("pht inspect: cannot open " .. ref .. ": the Docker daemon at " .. support.docker_host()
      .. " has no such image (HTTP 404)\n", cerr)
  end)

  it("refuses a name that is not a Docker reference, EINVAL", function()
    local img, err, code = pht.open_image("docker-daemon:a b")
    assert.is_nil(img)
    assert.equal("EINVAL", code)
    assert.matches("is not a Docker image name", err, 1, true)
  end)

  it("refuses to write to an image id, EINVAL", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = assert(support.load_base_image())
    local img = assert(pht.open_image("docker-daemon:" .. tag))
    local w = assert(img:writer({}))
    local done, err, code = w:commit("docker-daemon:" .. D.id(tag))
    img:close()
    assert.is_nil(done)
    assert.equal("EINVAL", code)
    assert.matches("write to a NAME[:TAG]", err, 1, true)
  end)

  it("pht pre-run exits 3 at open_image when no daemon listens at DOCKER_HOST", function()
    local sock = helpers.tmpdir() .. "/none.sock"
    local code, _, err = S.pht("pre-run -q docker-daemon:some/train:latest " .. S.station_args(1),
      { DOCKER_HOST = "unix://" .. sock })
    assert.equal(3, code, err)
    assert.matches("pre-run failed at step open_image: ", err, 1, true)
    assert.matches("cannot connect to unix://" .. sock .. ": No such file or directory", err, 1, true)
  end)

  it("pht pre-run exits 3 at open_image naming the daemon's answer for a missing image", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local name = support.unique_name("daemon-missing") .. ":latest"
    local code, _, err = S.pht("pre-run -q " .. q("docker-daemon:" .. name) .. " " .. S.station_args(1), D.env())
    assert.equal(3, code, err)
    assert.matches("pre-run failed at step open_image: ", err, 1, true)
    assert.matches("has no such image (HTTP 404)", err, 1, true)
  end)

  it("pht pre-run refuses DOCKER_HOST=ssh://, which libpht does not speak", function()
    local code, _, err = S.pht("pre-run -q docker-daemon:some/train:latest " .. S.station_args(1),
      { DOCKER_HOST = "ssh://user@station" })
    assert.equal(3, code, err)
    assert.matches("unix:///PATH and tcp://HOST:PORT endpoints only", err, 1, true)
  end)
end)

describe("the pht command and daemon images", function()
  it("takes a name without a transport as an image in the daemon", function()
    local cli = require "pht.cli"
    assert.equal("docker-daemon:busybox:latest", cli.image_ref("busybox:latest"))
    assert.equal("docker-daemon:pht/train", cli.image_ref("pht/train"))
    assert.equal("docker-daemon:localhost:5000/pht/train:v1", cli.image_ref("localhost:5000/pht/train:v1"))
    for _, ref in ipairs({ "docker-archive:t.tar:pht/train:latest", "oci:dir:latest",
      "docker-daemon:pht/train:latest", "docker://registry/pht/train" }) do
      assert.equal(ref, cli.image_ref(ref))
    end
  end)

  it("pht inspect reads REPO:TAG from the daemon as it reads docker-daemon:REPO:TAG", function()
    local ok, why = D.ready(false)
    if not ok then return pending(why) end
    local tag = D.load_stage(S.stages[1], support.unique_name("daemon-inspect"))
    finally(function() D.rmi(tag) end)
    local code, bare, err = S.pht("inspect --json " .. q(tag), D.env())
    assert.equal(0, code, err)
    local code2, full, err2 = S.pht("inspect --json " .. q("docker-daemon:" .. tag), D.env())
    assert.equal(0, code2, err2)
    local a, b = S.decode(bare), S.decode(full)
    assert.equal("docker-daemon:" .. tag, a.image)
    assert.equal(1, a.next.index)
    assert.same(b, a)
  end)
end)
