-- The public headers' comments say what the functions do: the salt length
-- pht_key_verify_digest accepts (checked against signatures the openssl
-- command line makes), and the image transports pht_image_open takes
-- (checked against the references the library itself lists when it refuses
-- one).
local pht = require "pht"
local h = require "helpers"
local q = h.q

-- The comment block right above the declaration of fn in a header.
local function comment_above(header, fn)
  local text = h.read(h.root .. "/core/include/pht/" .. header)
  local pos = assert(text:find("PHT_API[^;]-%f[%w_]" .. fn .. "%("), fn .. " is not declared in " .. header)
  local before = text:sub(1, pos - 1)
  local last
  for c in before:gmatch("/%*.-%*/") do last = c end
  assert(last and before:match("%*/%s*$"), "no comment right above " .. fn)
  return (last:gsub("\n%s*%*", " "):gsub("%s+", " "))
end

-- Sign the SHA-512 digest of data with openssl pkeyutl, PSS with the given
-- salt length ("max" or bytes), prehashed as e_d_sig is.
local function openssl_pss(key, digest, salt)
  local dir = h.tmpdir()
  h.write(dir .. "/digest", digest)
  h.run("openssl pkeyutl -sign -inkey " .. q(key) .. " -in " .. q(dir .. "/digest") .. " -out " .. q(dir .. "/sig")
    .. " -pkeyopt digest:sha512 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:" .. salt
    .. " -pkeyopt rsa_mgf1_md:sha512")
  return h.read(dir .. "/sig")
end

describe("core/include/pht/key.h", function()
  it("says pht_key_verify_digest accepts only the maximum PSS salt length, as it does", function()
    local doc = comment_above("key.h", "pht_key_verify_digest")
    assert.is_nil(doc:find("any salt", 1, true), doc)
    assert.matches("maximum salt length", doc, 1, true)

    local path = h.key_path("station_1")
    local key = assert(pht.load_private_key(h.read(path)))
    local digest = pht.sha512("results")
    assert.is_true(key:verify_digest(digest, openssl_pss(path, digest, "max")))
    assert.is_false(key:verify_digest(digest, openssl_pss(path, digest, "32")))
    assert.is_false(key:verify_digest(digest, openssl_pss(path, digest, "64")))
  end)
end)

describe("core/include/pht/image.h", function()
  local header = h.read(h.root .. "/core/include/pht/image.h")

  -- The reference forms of the transports the library knows (its one grammar).
  local function forms()
    local list = {}
    for _, t in ipairs(pht.transports()) do list[#list + 1] = t.syntax end
    assert.is_true(#list >= 3, "pht.transports() lists fewer than three transports")
    return list
  end

  it("lists every transport pht_image_open takes", function()
    local top = header:match("^/%*.-%*/")
    for _, f in ipairs(forms()) do
      assert.truthy(top:find(f, 1, true), "image.h's opening comment does not list " .. f)
    end
  end)

  it("names every transport pht_image_transport can return", function()
    local doc = comment_above("image.h", "pht_image_transport")
    for _, f in ipairs(forms()) do
      local name = f:match("^([%w-]+):")
      assert.truthy(doc:find('"' .. name .. '"', 1, true), "pht_image_transport's comment lacks " .. name .. ": " .. doc)
    end
  end)
end)
