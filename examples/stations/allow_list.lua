-- Station policy: accept only trains whose creator (and, if listed, builder)
-- is on this station's allow-list, by public-key fingerprint.
--
--   pht pre-run IMAGE --script examples/stations/allow_list.lua
--
-- The list is a text file named by $PHT_ALLOW_LIST (default
-- /etc/pht/allow-list), one entry a line, `#` starts a comment:
--
--   creator 3f1c...e9   # fingerprint: SHA-256 of the key's DER (pht keygen prints it)
--   builder 77ab...01
--
-- With no `builder` line any builder is accepted (the central service signs
-- each build with a fresh key). The check runs right after the signatures
-- were verified, so it judges keys that really signed this train.
local pht = require "pht"

local function load_list(path)
  local f, err = io.open(path, "r")
  if not f then return nil, "cannot read the allow-list: " .. tostring(err) end
  local list = { creator = {}, builder = {} }
  local n = 0
  for line in f:lines() do
    line = line:gsub("#.*$", "")
    local role, fp = line:match("^%s*(%a+)%s+(%x+)%s*$")
    if role then
      if not list[role] then f:close() return nil, "unknown role " .. role .. " in " .. path end
      list[role][fp:lower()] = true
      n = n + 1
    elseif line:match("%S") then
      f:close()
      return nil, "cannot read line '" .. line .. "' of " .. path
    end
  end
  f:close()
  list.has_builders = next(list.builder) ~= nil
  return list
end

local function fingerprint(hex)
  local key, err = pht.load_public_key_hex(hex or "")
  if not key then return nil, err end
  return key:fingerprint()
end

local function check_allowed_signers(ctx)
  local path = os.getenv("PHT_ALLOW_LIST") or "/etc/pht/allow-list"
  local list, err = load_list(path)
  if not list then return nil, err end
  local creator = ctx.config:get("creator") or {}
  local cfp = fingerprint(creator.rsa_public_key)
  if not (cfp and list.creator[cfp]) then
    return nil, "creator " .. tostring(creator.id) .. " (key " .. tostring(cfp) .. ") is not on the allow-list " .. path
  end
  if list.has_builders then
    local build = ctx.config:get("build") or {}
    local bfp = fingerprint(build.rsa_public_key)
    if not (bfp and list.builder[bfp]) then
      return nil, "the builder's key " .. tostring(bfp) .. " is not on the allow-list " .. path
    end
  end
  ctx:log("info", "creator %s is on the allow-list", tostring(creator.id))
  return true
end

return {
  pre_run = function(wf)
    wf:insert_after("verify_build_signature", "check_allowed_signers", check_allowed_signers,
      { kind = "policy" })
  end,
}
