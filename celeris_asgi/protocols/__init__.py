"""Wire protocols: HTTP/1.1, HTTP/2 and WebSocket, and the sniffer that picks one per connection."""
