-- The same logical request again and again: offergate replays the stored answer.
wrk.method = "POST"
wrk.path = "/encore/publisher/sdk/v1/offers/message"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = "load-replay-key"
wrk.body = '{"clientId":"client-1","chatId":"replay-chat","attributes":{"countryCode":"US","language":"en","platform":"ios"}}'
