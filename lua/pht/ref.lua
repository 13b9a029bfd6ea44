-- Image references as the protocol's workflows use them, over the core's
-- one grammar (pht.parse_ref, pht.ref_with_tag, pht.transports; doc/lua-api.md
-- "Image references"): the reference a command-line IMAGE stands for,
-- REPO:base beside REPO:latest (doc/protocol.md §1), the names a docker-archive
-- carries, the source.address of a train built into a reference. Nothing
-- here splits a reference string itself.
local pht = require "pht"

local M = {}

-- A command-line IMAGE as a reference string, or nil and a message. A
-- reference with one of libpht's transports is taken as it is; a name
-- without one ("repo:tag", "registry:5000/repo:tag") is an image in the
-- Docker daemon at $DOCKER_HOST, as the reference implementation takes it.
-- What is neither (an unknown "transport:" in front of something that is no
-- daemon name, a malformed reference) is refused with the core's message
-- for the reference, which lists the transports libpht knows.
function M.from_argument(s)
  if s == nil then return nil end
  local r, err = pht.parse_ref(s)
  if r then return r.string end
  local bare = pht.parse_ref(s, { bare = true })
  if bare then return bare.string end
  return nil, err
end

-- The lines of --help saying what IMAGE may be, from the transports
-- libpht knows.
function M.argument_help()
  local lines = { "IMAGE is a reference:" }
  for _, t in ipairs(pht.transports()) do lines[#lines + 1] = "  " .. t.syntax end
  lines[#lines + 1] = "or just NAME[:TAG]: an image in the Docker daemon at $DOCKER_HOST."
  return table.concat(lines, "\n")
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

-- True when `reference` is a docker-archive without NAME[:TAG] (its only
-- image, whatever it is called).
function M.unnamed_archive(reference)
  local r = pht.parse_ref(reference)
  return r ~= nil and r.transport == "docker-archive" and r.name == nil and r.index == nil
end

-- The tag REPO:base beside the train's REPO:latest in the same archive,
-- layout or daemon, as a reference. img (optional) supplies the name of an
-- archive's image when the reference has none.
function M.base(reference, img)
  local name
  if img and M.unnamed_archive(reference) then
    name = M.repo_tags(img)[1]
    if not name then return nil, "cannot tell the train's repository from " .. reference .. "; give --base" end
  end
  local base, err = pht.ref_with_tag(reference, name, "base")
  if not base then return nil, "cannot derive REPO:base from " .. reference .. ": " .. tostring(err) .. "; give --base" end
  return base
end

-- What a train built into `reference` records as its source.address (§2):
-- the repository the reference names, else its archive or layout.
function M.source_address(reference)
  local r = assert(pht.parse_ref(reference))
  return r.name or r.path or r.location
end

return M
