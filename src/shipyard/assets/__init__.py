"""Static assets and the CDN: the public directory served at `/`, `shipyard assets build`
(fingerprints, minifies, precompresses), CDN URLs and purges (docs/assets.md)."""
