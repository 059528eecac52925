"""FaceGuard: a learned watermark robust to image post-processing and fragile to deepfake manipulation."""
