-- A new conversation per request, each with its own Idempotency-Key: the
-- miss path with an explicit key (stored for the key's TTL).
local n = 0
local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  local body = '{"clientId":"client-' .. (n % 100) .. '","chatId":"' .. run .. '-' .. n ..
    '","attributes":{"countryCode":"US","language":"en","platform":"ios"}}'
  local headers = { ["Content-Type"] = "application/json", ["Idempotency-Key"] = run .. "-" .. n }
  return wrk.format("POST", "/encore/publisher/sdk/v1/offers/message", headers, body)
end
