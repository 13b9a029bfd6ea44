-- JSON for the command line and station scripts: the module's cJSON-backed
-- pht.json_encode / pht.json_decode when it has them, else dkjson (Debian's
-- lua-dkjson, which busted also installs).
local M = {}

local ok_pht, pht = pcall(require, "pht")
local ok_dk, dkjson = pcall(require, "dkjson")

M.null = (ok_dk and dkjson.null) or setmetatable({}, { __tostring = function() return "null" end })

-- Encode a Lua value (tables with 1..n keys as arrays). `indent` pretty-prints.
function M.encode(value, indent)
  if ok_pht and pht.json_encode then return pht.json_encode(value, indent) end
  if ok_dk then return dkjson.encode(value, { indent = indent and true or nil }) end
  error("no JSON encoder: install lua-dkjson", 2)
end

-- Decode JSON text; returns value or nil, message.
function M.decode(text)
  if ok_pht and pht.json_decode then return pht.json_decode(text) end
  if ok_dk then
    local v, _, err = dkjson.decode(text, 1, nil)
    if err then return nil, err end
    return v
  end
  error("no JSON decoder: install lua-dkjson", 2)
end

return M
