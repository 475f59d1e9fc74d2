"""Update codecs (client-side encode, server-side decode) and their wire format."""
