-- Archives written by a real `docker save` of two tags that share layers:
-- Docker stores a shared layer once and links the other copy to it with a
-- relative symlink member ("../<id>/layer.tar"). Both tags open, and a commit
-- in place (a rebase onto REPO:base, as post-run does) keeps both loadable.
local pht = require "pht"
local h = require "helpers"
local support = require "support"

describe("a docker save archive of REPO:latest and REPO:base", function()
  local repo, dir, archive

  before_each(function()
    local ok, why = support.containers_available()
    if not ok then
      if support.required("docker") then error(why) end
      return
    end
    repo = support.unique_name("save")
    dir = h.tmpdir()
    archive = dir .. "/two.tar"
    local base = assert(support.load_base_image())
    assert(support.docker("tag " .. h.q(base) .. " " .. h.q(repo .. ":base")))
    local ok2, cid = support.docker("create " .. h.q(repo .. ":base")
      .. " /bin/sh -c 'mkdir -p /opt && echo hi > /opt/x'")
    assert(ok2, cid)
    cid = assert(cid:match("^(%x+)\n$"), "docker create printed no container id on stdout: " .. cid)
    assert(support.docker("start -a " .. cid))
    assert(support.docker("commit " .. cid .. " " .. h.q(repo .. ":latest")))
    assert(support.docker("rm " .. cid))
    local saved, out = support.docker("save -o " .. h.q(archive) .. " " .. h.q(repo .. ":latest")
      .. " " .. h.q(repo .. ":base"))
    assert(saved, out)
  end)

  after_each(function()
    if repo then
      support.docker("rmi -f " .. h.q(repo .. ":latest") .. " " .. h.q(repo .. ":base"))
      repo = nil
    end
  end)

  local function skip_without_docker()
    local ok, why = support.containers_available()
    if not ok then pending(why) return true end
  end

  it("holds the shared layer as a relative symlink member, and both tags open", function()
    if skip_without_docker() then return end
    assert.matches("l[rwx-]+ .* %x+/layer%.tar %-> %.%./%x+/layer%.tar", h.run("tar -tvf " .. h.q(archive)))
    local latest = assert(pht.open_image("docker-archive:" .. archive .. ":" .. repo .. ":latest"))
    local base = assert(pht.open_image("docker-archive:" .. archive .. ":" .. repo .. ":base"))
    assert.are.equal(#base:layers() + 1, #latest:layers())
    assert.are.equal("hi\n", latest:read_file("/opt/x", 100))
    assert.is_truthy(base:stat("/bin/busybox"))
  end)

  it("rebases REPO:latest onto REPO:base in place and docker loads both tags", function()
    if skip_without_docker() then return end
    local ref = "docker-archive:" .. archive .. ":" .. repo .. ":latest"
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer({ base = "docker-archive:" .. archive .. ":" .. repo .. ":base" }))
    assert(w:add_bytes("/opt/y", "rebased\n", {}))
    assert(w:commit(ref))
    img:close()
    local again = assert(pht.open_image(ref))
    assert.are.equal("rebased\n", again:read_file("/opt/y", 100))
    assert.is_nil(again:stat("/opt/x"))
    support.docker("rmi -f " .. h.q(repo .. ":latest") .. " " .. h.q(repo .. ":base"))
    local ok, out = support.docker("load -i " .. h.q(archive))
    assert(ok, out)
    assert.matches("Loaded image: " .. repo:gsub("%-", "%%-") .. ":latest", out)
    assert.matches("Loaded image: " .. repo:gsub("%-", "%%-") .. ":base", out)
    local _, cat = support.docker("run --rm --network none " .. h.q(repo .. ":latest") .. " cat /opt/y")
    assert.are.equal("rebased\n", cat)
  end)
end)

describe("a symlink member of a docker-archive", function()
  it("that climbs above the archive root is refused and names the member", function()
    local dir = h.tmpdir() .. "/x"
    local fixture = h.run("readlink -f " .. h.q(h.vectors .. "/stage1-station_1-post.tar")):gsub("%s+$", "")
    h.run("mkdir " .. h.q(dir) .. " && cd " .. h.q(dir) .. " && tar -xf " .. h.q(fixture)
      .. " && rm 33fdcefca036d2ba6bc8d827c9518d5ac8f7aa03f34ef4bef3cc762f07d2be7c/layer.tar"
      .. " && ln -s ../../etc/passwd 33fdcefca036d2ba6bc8d827c9518d5ac8f7aa03f34ef4bef3cc762f07d2be7c/layer.tar"
      .. " && tar -cf ../evil.tar *")
    local path = dir .. "/../evil.tar"
    local before = h.sha256_file(path)
    local img, err, code = pht.open_image("docker-archive:" .. path)
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.matches('member link "33fdcefca036d2ba6bc8d827c9518d5ac8f7aa03f34ef4bef3cc762f07d2be7c/layer.tar" leaves the archive', err, 1, true)
    assert.are.equal(before, h.sha256_file(path))
  end)
end)
