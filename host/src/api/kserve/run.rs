//! Running a request: a graph model's tensors, or a text model's texts.

use axum::http::StatusCode;

use super::bad;
use super::elems::Elems;
use super::request::{Input, Wanted};
use crate::api::error::ApiError;
use crate::core::engine::Model;
use crate::core::manifest::Task;
use crate::core::tensor::NamedTensor;
use crate::core::text::Truncation;

/// One output of the answer.
pub(crate) struct Output {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Elems,
}

pub(crate) async fn run_graph(
    m: &Model,
    inputs: Vec<Input>,
    wanted: Option<&[Wanted]>,
) -> Result<Vec<Output>, ApiError> {
    let tensors = inputs
        .into_iter()
        .map(|t| {
            let datatype = t.data.datatype();
            let Some(data) = t.data.into_tensor() else {
                return Err(bad(format!(
                    "input {:?} has datatype {datatype}: model {} takes it as a string tensor, which llmos \
                     cannot pass to a graph; graph inputs accept FP32, FP16, INT64, INT32 and BOOL \
                     (BYTES only for the text input of embed, classify and token-classify models)",
                    t.name,
                    m.name()
                )));
            };
            Ok(NamedTensor {
                data,
                name: t.name,
                shape: t.shape,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let names = wanted.map(|w| {
        let mut n: Vec<String> = Vec::with_capacity(w.len());
        for w in w {
            if !n.contains(&w.name) {
                n.push(w.name.clone());
            }
        }
        n
    });
    let out = m
        .infer(tensors, names)
        .map_err(|e| ApiError::from(e).kserve())?
        .recv()
        .await
        .map_err(|e| ApiError::from(e).kserve())?;
    Ok(out
        .into_iter()
        .map(|t| Output {
            name: t.name,
            shape: t.shape,
            data: Elems::from_tensor(t.data),
        })
        .collect())
}

pub(crate) async fn run_text(
    m: &Model,
    inputs: Vec<Input>,
    truncation: Truncation,
) -> Result<Vec<Output>, ApiError> {
    let Some(input) = inputs.into_iter().find(|t| t.name == "text") else {
        return Err(bad(format!(
            "missing input \"text\": model {} takes texts as input \"text\" (BYTES, shape [-1])",
            m.name()
        )));
    };
    let Elems::Bytes(items) = input.data else {
        return Err(bad(format!(
            "input \"text\" has datatype {}: model {} takes texts as BYTES",
            input.data.datatype(),
            m.name()
        )));
    };
    let texts = items
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            String::from_utf8(b).map_err(|e| {
                bad(format!(
                    "input \"text\": element {i} is not valid UTF-8 ({e}): texts must be UTF-8"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = texts.len();
    let task_err = |e| ApiError::from(e).kserve();
    Ok(match m.manifest.task {
        Task::Embed => {
            let out = m
                .embed(texts, truncation)
                .map_err(task_err)?
                .recv()
                .await
                .map_err(task_err)?;
            let dim = out.vectors.first().map_or(0, Vec::len);
            vec![Output {
                name: "embedding".into(),
                shape: vec![n, dim],
                data: Elems::F32(out.vectors.into_iter().flatten().collect()),
            }]
        }
        Task::Classify => {
            let out = m
                .classify(texts, truncation)
                .map_err(task_err)?
                .recv()
                .await
                .map_err(task_err)?;
            let labels = m.labels.clone().unwrap_or_default();
            let mut scores = Vec::with_capacity(n.saturating_mul(labels.len()));
            let mut top = Vec::with_capacity(n);
            for row in &out.scores {
                for l in &labels {
                    scores.push(
                        row.iter()
                            .find(|s| &s.label == l)
                            .map_or(f32::NAN, |s| s.score),
                    );
                }
                top.push(
                    row.first()
                        .map_or_else(Vec::new, |s| s.label.clone().into_bytes()),
                );
            }
            vec![
                Output {
                    name: "scores".into(),
                    shape: vec![n, labels.len()],
                    data: Elems::F32(scores),
                },
                Output {
                    name: "label".into(),
                    shape: vec![n],
                    data: Elems::Bytes(top),
                },
            ]
        }
        _ => {
            let out = m
                .entities(texts, truncation)
                .map_err(task_err)?
                .recv()
                .await
                .map_err(task_err)?;
            vec![Output {
                name: "entities".into(),
                shape: vec![n],
                data: Elems::Bytes(
                    out.entities
                        .iter()
                        .map(serde_json::to_vec)
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "server_error",
                                format!("cannot encode the entities: {e}"),
                            )
                            .kserve()
                        })?,
                ),
            }]
        }
    })
}
