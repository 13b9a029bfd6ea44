-- Image references: what a train image is called (transport:location, with
-- the NAME:TAG or TAG inside an archive or a layout) and the names derived
-- from it: REPO:base beside REPO:latest (PROTOCOL.md §1), the names a
-- docker-archive carries, the reference a command-line argument stands for.
-- Every reference the Lua side reads or builds goes through here.
local pht = require "pht"

local M = {}

-- The transports libpht opens; a name without one of them is an image in
-- the Docker daemon.
local TRANSPORTS = { ["docker-archive"] = true, oci = true, ["docker-daemon"] = true }

-- Split a reference: transport, location, name ("repo:tag" in an archive,
-- "tag" in a layout, or nil).
function M.split(ref)
  local transport, rest = ref:match("^([%w%-]+):(.*)$")
  if transport == "docker-archive" then
    local path, name = rest:match("^([^:]*):([^:]+:[^:]+)$")
    return transport, path or rest, name
  elseif transport == "oci" then
    local dir, tag = rest:match("^([^:]*):(.+)$")
    return transport, dir or rest, tag
  end
  return transport, rest, nil
end

-- A command-line IMAGE as a reference: a name without one of libpht's
-- transports ("repo:tag", "registry:5000/repo:tag") is an image in the
-- Docker daemon at $DOCKER_HOST, as the reference implementation takes it.
function M.from_argument(s)
  if s == nil then return nil end
  local t = s:match("^([%w%-]+):")
  if (t and TRANSPORTS[t]) or s:match("^docker://") then return s end
  return "docker-daemon:" .. s
end

-- The "repo:tag" names of a docker-archive image ({} for other transports).
function M.repo_tags(img)
  if img:transport() ~= "docker-archive" then return {} end
  local m = pht.json_decode(img:manifest())
  local tags = {}
  if type(m) == "table" and type(m.RepoTags) == "table" then
    for _, t in ipairs(m.RepoTags) do if type(t) == "string" then tags[#tags + 1] = t end end
  end
  return tags
end

-- What a train built into `ref` records as its source.address (§2): REPO
-- of the NAME:TAG inside an archive, else the reference's location.
function M.source_address(ref)
  local _, where, name = M.split(ref)
  return name and name:match("^(.*):[^:]+$") or where
end

-- The tag REPO:base beside the train's REPO:latest in the same archive,
-- layout or daemon, as a reference. img (optional) supplies the archive's
-- name when the reference has none.
function M.base(ref, img)
  local transport, where, name = M.split(ref)
  if transport == "docker-archive" then
    name = name or (img and M.repo_tags(img)[1])
    local repo = name and name:match("^(.*):[^:/]+$")
    if not repo then return nil, "cannot tell the train's repository from " .. ref .. "; give --base" end
    return "docker-archive:" .. where .. ":" .. repo .. ":base"
  elseif transport == "oci" then
    return "oci:" .. where .. ":base"
  elseif transport == "docker-daemon" then
    local repo = where:match("^(.*):[^:/]+$") or where
    return "docker-daemon:" .. repo .. ":base"
  end
  return nil, "cannot derive REPO:base from " .. ref .. "; give --base"
end

return M
