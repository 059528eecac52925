"""FaceGuard (Yang et al. 2021): a learned watermark robust to image post-processing and fragile to deepfakes.

The library's pieces of it, by role:
- networks: zoo/models/faceguard.py (`faceguard` encoder / decoder / critic, `face_autoencoder`);
- training: zoo/tasks/watermarking.py (and zoo/tasks/autoencoding.py for the autoencoder), data zoo/data/faces.py,
  recipe configs/faceguard.py;
- layers the task trains through: zoo/watermark/noise.py (differentiable post-processing) and
  zoo/watermark/manipulation.py (simulated face replacement);
- use of a trained watermark: zoo/watermark/api.py (`load(workdir)`, then embed / extract / verify).
The paper's evaluation and its embed / verify command line are a project on top of these: projects/faceguard/.
"""
