-- The image reference grammar as the binding exposes it: pht.parse_ref,
-- pht.ref_with_tag and pht.transports over core/src/image_ref.c.
local pht = require "pht"
local h = require "helpers"

local HEX64 = string.rep("0123456789abcdef", 4)
local KNOWN = "libpht knows docker-archive:PATH[:NAME[:TAG]|:@N], oci:DIR[:TAG], "
  .. "docker-daemon:NAME[:TAG|@sha256:HEX], docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX], "
  .. "oci-archive:PATH[:TAG]"

-- f(...) fails with EINVAL and a message holding each of whys.
local function einval(whys, f, ...)
  local t, err, code = f(...)
  assert.is_nil(t)
  assert.are.equal("EINVAL", code)
  for _, why in ipairs(whys) do assert.matches(why, err, 1, true) end
end

local function bad(ref, why, opts)
  einval({ 'image reference "' .. ref .. '": ', why }, pht.parse_ref, ref, opts)
end

describe("pht.parse_ref", function()
  it("splits a docker-archive reference into PATH, NAME and TAG", function()
    assert.are.same({ transport = "docker-archive", location = "/x/t.tar:localhost:5000/pht/train:v1",
      path = "/x/t.tar", name = "localhost:5000/pht/train", tag = "v1",
      string = "docker-archive:/x/t.tar:localhost:5000/pht/train:v1" },
      pht.parse_ref("docker-archive:/x/t.tar:localhost:5000/pht/train:v1"))
  end)

  it("gives a NAME without a TAG the tag latest", function()
    local t = assert(pht.parse_ref("docker-archive:t.tar:pht/train"))
    assert.are.equal("pht/train", t.name)
    assert.are.equal("latest", t.tag)
    t = assert(pht.parse_ref("docker-daemon:pht/train"))
    assert.are.equal("pht/train", t.name)
    assert.are.equal("latest", t.tag)
  end)

  it("leaves name and tag nil for an archive's only image and gives @N as index", function()
    assert.are.same({ transport = "docker-archive", location = "t.tar", path = "t.tar",
      string = "docker-archive:t.tar" }, pht.parse_ref("docker-archive:t.tar"))
    local t = assert(pht.parse_ref("docker-archive:t.tar:@2"))
    assert.are.equal(2, t.index)
    assert.is_nil(t.name)
  end)

  it("takes everything after an oci DIR's first colon as the TAG", function()
    assert.are.same({ transport = "oci", location = "dir:v1:rc", path = "dir", tag = "v1:rc",
      string = "oci:dir:v1:rc" }, pht.parse_ref("oci:dir:v1:rc"))
  end)

  it("reads daemon references by tag, digest and image id", function()
    local t = assert(pht.parse_ref("docker-daemon:pht/train@sha256:" .. HEX64))
    assert.are.equal("pht/train", t.name)
    assert.is_nil(t.tag)
    assert.are.equal("sha256:" .. HEX64, t.digest)
    t = assert(pht.parse_ref("docker-daemon:sha256:" .. HEX64))
    assert.is_nil(t.name)
    assert.are.equal("sha256:" .. HEX64, t.digest)
  end)

  it("parses docker:// fully, with the registry host", function()
    assert.are.same({ transport = "docker", location = "//registry.example:5000/pht/train:v1",
      name = "registry.example:5000/pht/train", tag = "v1", host = "registry.example:5000",
      string = "docker://registry.example:5000/pht/train:v1" },
      pht.parse_ref("docker://registry.example:5000/pht/train:v1"))
    assert.are.equal("docker.io", pht.parse_ref("docker://busybox").host)
  end)

  it("takes a bare name as a daemon image with bare = true, as the pht command does", function()
    assert.are.equal("docker-daemon:busybox:latest",
      pht.parse_ref("busybox:latest", { bare = true }).string)
    assert.are.equal("docker-daemon:localhost:5000/pht/train:v1",
      pht.parse_ref("localhost:5000/pht/train:v1", { bare = true }).string)
    for _, ref in ipairs({ "docker-archive:t.tar:pht/train:latest", "oci:dir:latest",
      "docker-daemon:pht/train:latest", "docker://registry.example/pht/train" }) do
      assert.are.equal(ref, pht.parse_ref(ref, { bare = true }).string)
    end
  end)

  it("refuses an unknown transport and lists those libpht knows", function()
    bad("dir:/tmp/x", 'unknown transport "dir"')
    bad("dir:/tmp/x", KNOWN)
    bad("oci-dir:t", 'unknown transport "oci-dir"')
  end)

  it("refuses a bare path or name without bare = true", function()
    bad("/tmp/t.tar", "no transport; " .. KNOWN)
    bad("busybox:latest", 'unknown transport "busybox"')
  end)

  it("refuses an empty docker-archive PATH, NAME or TAG, naming the syntax", function()
    bad("docker-archive:", "empty PATH; expected docker-archive:PATH[:NAME[:TAG]|:@N]")
    bad("docker-archive:t.tar::v1", "empty NAME")
    bad("docker-archive:t.tar:pht/train:", "empty TAG")
  end)

  it("refuses @N without a number", function()
    bad("docker-archive:t.tar:@x", "@N needs a number N")
  end)

  it("refuses a digest in a docker-archive reference", function()
    bad("docker-archive:t.tar:pht/train@sha256:" .. HEX64, "names images by NAME:TAG")
  end)

  it("refuses an empty oci DIR", function()
    bad("oci::latest", "empty DIR; expected oci:DIR[:TAG]")
  end)

  it("refuses a daemon name that is not a Docker reference", function()
    bad("docker-daemon:a b", '"a b" is not a Docker image name')
    bad("a b", '"a b" is not a Docker image name', { bare = true })
  end)

  it("refuses a colon in a daemon NAME that does not separate HOST and PORT", function()
    bad("docker-daemon:pht/train:v1:x", "a ':' in NAME must separate HOST and PORT")
  end)

  it("refuses a short digest and a malformed image id", function()
    bad("docker-daemon:pht/train@sha256:abc", "a digest is sha256: and 64 lowercase hex digits")
    bad("docker-daemon:sha256:xyz", "an image id is sha256: and lowercase hex digits")
  end)

  it("refuses docker: without //", function()
    bad("docker:busybox", "expected docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]")
  end)

  it("raises on an argument of the wrong type", function()
    assert.has_error(function() pht.parse_ref(nil) end)
    assert.has_error(function() pht.parse_ref("oci:x", "bare") end)
  end)
end)

describe("pht.ref_with_tag", function()
  it("names another tag of the same repository in the same archive, layout or daemon", function()
    assert.are.equal("docker-archive:t.tar:pht/train:base",
      pht.ref_with_tag("docker-archive:t.tar:pht/train:latest", nil, "base"))
    assert.are.equal("oci:dir:base", pht.ref_with_tag("oci:dir:latest", nil, "base"))
    assert.are.equal("docker-daemon:localhost:5000/pht/train:base",
      pht.ref_with_tag("docker-daemon:localhost:5000/pht/train", nil, "base"))
  end)

  it("takes an image's repo:tag as the repository when the reference names none", function()
    assert.are.equal("docker-archive:t.tar:pht/train:base",
      pht.ref_with_tag("docker-archive:t.tar", "pht/train:latest", "base"))
  end)

  it("fails when no repository is known", function()
    einval({ "docker-archive:t.tar names no repository" }, pht.ref_with_tag, "docker-archive:t.tar",
      nil, "base")
  end)

  it("fails on a malformed reference", function()
    einval({ 'unknown transport "dir"' }, pht.ref_with_tag, "dir:/x", nil, "base")
  end)
end)

describe("pht.transports", function()
  it("lists the transports with their syntax, in the order of the messages", function()
    local names, syntaxes = {}, {}
    for i, t in ipairs(pht.transports()) do
      names[i], syntaxes[i] = t.name, t.syntax
    end
    assert.are.same({ "docker-archive", "oci", "docker-daemon", "docker", "oci-archive" }, names)
    assert.are.equal(KNOWN, "libpht knows " .. table.concat(syntaxes, ", "))
  end)
end)

describe("images opened by reference", function()
  it("opens an archive's image by the NAME:TAG pht.ref_with_tag builds from its RepoTags", function()
    local ref = "docker-archive:" .. h.vectors .. "/stage0-built.tar"
    local img = assert(pht.open_image(ref))
    local repo_tag = pht.json_decode(img:manifest()).RepoTags[1]
    local config = img:image_config()
    img:close()
    assert.are.equal("pht-bench/ref-0:latest", repo_tag)
    local named = assert(pht.ref_with_tag(ref, repo_tag, "latest"))
    assert.are.equal(ref .. ":pht-bench/ref-0:latest", named)
    img = assert(pht.open_image(named))
    assert.are.equal(named, img:reference())
    assert.are.equal(config, img:image_config())
    img:close()
  end)

  it("opens docker:// through its registry, whose failure the message names", function()
    local img, err = pht.open_image("docker://127.0.0.1:1/pht/train:v1")
    assert.is_nil(img)
    assert.is_truthy(err:find("registry 127.0.0.1:1", 1, true), err)
  end)
end)
