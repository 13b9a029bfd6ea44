-- Decoding a field of the train configuration (doc/protocol.md §2): the hex of
-- raw bytes, the hex of a public key's PEM. Each returns the value, or nil
-- and a message naming the field (`what`), so a step reports which field of
-- the config is wrong. `short` shortens a digest for such messages.
local pht = require "pht"

local M = {}

-- The raw bytes of a hex field; nil, message when it is missing or not hex.
function M.unhex(hex, what)
  if hex == nil then return nil, what .. " is missing" end
  local raw, err = pht.unhex(hex)
  if not raw then return nil, string.format("%s is not hex: %s", what, tostring(err)) end
  return raw
end

-- The pht.key of a public-key field (hex of SPKI or PKCS#1 PEM).
function M.public_key(hex, what)
  local key, err = pht.load_public_key_hex(hex)
  if not key then return nil, string.format("%s is not a usable public key: %s", what, tostring(err)) end
  return key
end

-- The first 16 hex digits of a digest, for messages.
function M.short(raw)
  return pht.hex(raw):sub(1, 16) .. "..."
end

return M
