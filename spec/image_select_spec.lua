-- Which image a docker-archive reference without NAME:TAG opens. An archive
-- of one image opens it; `pht build` and `docker save REPO:latest REPO:base`
-- write the train beside its own REPO:base, and the bare path opens the
-- train; any other archive of several images must be named.
local pht = require "pht"
local h = require "helpers"

local train_src = h.vectors .. "/stage0-built.tar"
local base_src = h.vectors .. "/stage1-station_1-post.tar"

-- An archive at dir/name.tar holding the given tags, each pointing at the
-- train or the base vector ({ ["repo/t:latest"] = "train", ... }).
local function archive(dir, tags)
  local path = dir .. "/two.tar"
  for tag, which in pairs(tags) do
    local img = assert(pht.open_image("docker-archive:" .. (which == "train" and train_src or base_src)))
    assert(img:retag("docker-archive:" .. path .. ":" .. tag))
    img:close()
  end
  return path
end

local function repo_tags(img)
  return img:manifest():match('"RepoTags":(%b[])')
end

describe("a docker-archive reference without NAME:TAG", function()
  local dir
  before_each(function() dir = h.tmpdir() end)

  it("opens REPO:latest of an archive that also holds its REPO:base", function()
    local path = archive(dir, { ["pht/train:latest"] = "train", ["pht/train:base"] = "base" })
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.equal('["pht/train:latest"]', repo_tags(img))
    img:close()
  end)

  it("opens the train whatever its tag when the other image is its REPO:base", function()
    local path = archive(dir, { ["pht/train:v2"] = "train", ["pht/train:base"] = "base" })
    local img = assert(pht.open_image("docker-archive:" .. path))
    assert.are.equal('["pht/train:v2"]', repo_tags(img))
    img:close()
  end)

  it("opens the only image of a one-image archive", function()
    local img = assert(pht.open_image("docker-archive:" .. train_src))
    assert.are.equal('["pht-bench/ref-0:latest"]', repo_tags(img))
    img:close()
  end)

  it("refuses two images of different repositories, saying how to name one", function()
    local path = archive(dir, { ["pht/train:latest"] = "train", ["other/train:base"] = "base" })
    local img, err, code = pht.open_image("docker-archive:" .. path)
    assert.is_nil(img)
    assert.are.equal("EINVAL", code)
    assert.matches("holds 2 images: name one as docker-archive:PATH:NAME:TAG", err, 1, true)
  end)

  it("refuses two images of one repository when neither is its :base", function()
    local path = archive(dir, { ["pht/train:latest"] = "train", ["pht/train:old"] = "base" })
    local img, err = pht.open_image("docker-archive:" .. path)
    assert.is_nil(img)
    assert.matches("holds 2 images", err, 1, true)
  end)

  it("still opens REPO:base when it is named", function()
    local path = archive(dir, { ["pht/train:latest"] = "train", ["pht/train:base"] = "base" })
    local img = assert(pht.open_image("docker-archive:" .. path .. ":pht/train:base"))
    assert.are.equal('["pht/train:base"]', repo_tags(img))
    img:close()
  end)
end)
