-- A new conversation per request: nothing is de-duplicated (the miss path).
local n = 0
local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))
-- Set for the direct runs only: a proxy injects the key itself.
local key = os.getenv("API_KEY")
request = function()
  n = n + 1
  local body = '{"clientId":"client-' .. (n % 100) .. '","chatId":"' .. run .. '-' .. n ..
    '","attributes":{"countryCode":"US","language":"en","platform":"ios"}}'
  local headers = { ["Content-Type"] = "application/json" }
  if key then headers["X-API-Key"] = key end
  return wrk.format("POST", "/encore/publisher/sdk/v1/offers/message", headers, body)
end
