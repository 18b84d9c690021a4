"""The CMFD workload: copy-move forgery detection for the Recod.ai/LUC Scientific Image Forgery Detection competition.

Entry points for a training loop (plain objects; nothing here imports the generic kit's trainer):

- config: `kaggle_kit.cmfd.config.load_cmfd_config(path | "default" | "tiny", overrides)` -> `CMFDConfig`
  (nested dataclasses: backbone, correlation, decoder, loss, postprocess, data, train).
- data: `kaggle_kit.cmfd.data.scan_competition(root)`, `split_cases(cases, val_fraction=, seed=)` (grouped by
  case_id) and `CMFDDataset(cases, image_size=, augment=, synthetic_prob=)` yielding (image, mask, case_id).
- model: `kaggle_kit.cmfd.model.build_model(cfg)` -> `CMFDNet` ((B, 3, H, W) in [0, 1] -> (B, 1, H, W) logits).
- loss: `kaggle_kit.cmfd.losses.CMFDLoss(cfg.loss)` called as ``loss(logits, mask)``.
- inference: `kaggle_kit.cmfd.inference.predict_annotation(model, image, cfg)` (one image -> annotation) and
  `predict_folder(model, test_images, sample_submission, out, cfg)` (-> validated submission.csv).
- validation: `kaggle_kit.cmfd.inference.validation_score(model, cases, cfg)` (the competition metric), and
  `predict_cases` + `tune_postprocess` to tune the thresholds.
- metric and format: `kaggle_kit.cmfd.metric.score_files`, `kaggle_kit.cmfd.rle`, `kaggle_kit.cmfd.submission`.
- synthetic data: `kaggle_kit.cmfd.synthetic.make_synthetic_competition(dest, n_cases=, size=, seed=)`.
- command line: ``kaggle-kit cmfd score --solution S.csv --submission P.csv`` and ``kaggle-kit cmfd synth DEST``.
"""
