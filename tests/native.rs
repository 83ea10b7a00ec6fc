//! Rust tests of the native core on libtorch alone: closed-form Jacobians, directions and checks.
//!
//! `make test` runs them (`cargo test --release`) before the pytest suite. Each model here has a
//! Jacobian known in closed form, so no Python reference is needed.
//! build.rs compiles them out, with a warning, where Python has no shared libpython to link.
#![cfg(not(no_rust_tests))]

use _native::autograd::{gradient, vector_jacobian_product};
use _native::checks::{batch_and_size, check_inputs, check_same_batch, Shaped};
use _native::directions::{DefaultGenerator, Directions, Draws, Normal};
use _native::engine::WarningCapture;
use _native::error::{first_paragraph, Error, Result};
use _native::frobenius::squared_frobenius;
use _native::numerics::{reduce, tiny, unit_rows};
use _native::options::{
    Factor, FrobeniusOptions, PowerIteration, ProjectionCount, Reduction, Sampling, SpectralOptions,
};
use _native::spectral;
use std::cell::RefCell;
use tch::{Device, Kind, Tensor};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

fn no_interrupt() -> Result<()> {
    Ok(())
}

fn options(count: ProjectionCount, sampling: Sampling, reduction: Reduction) -> FrobeniusOptions {
    FrobeniusOptions {
        count,
        sampling,
        reduction,
        factor: Factor::new(0.5).unwrap(),
        create_graph: true,
    }
}

/// The Frobenius estimate for y's Jacobian with respect to x, called as the Python binding does.
fn estimate(x: &Tensor, y: &Tensor, options: FrobeniusOptions) -> Result<Tensor> {
    estimate_with(x, y, options, &DefaultGenerator)
}

/// The same, drawing from `normal`.
fn estimate_with(
    x: &Tensor,
    y: &Tensor,
    options: FrobeniusOptions,
    normal: &dyn Normal,
) -> Result<Tensor> {
    let (x, y) = (
        Shaped::new(x.shallow_clone()),
        Shaped::new(y.shallow_clone()),
    );
    squared_frobenius(&x, &y, options, Draws::Normal(normal), &no_interrupt)
}

/// A draw source that hands out prescribed tensors in order, as a caller's generator would.
struct Prescribed {
    draws: RefCell<Vec<Tensor>>,
    device: Option<Device>,
}

impl Normal for Prescribed {
    fn device(&self) -> Option<Device> {
        self.device
    }

    fn draw(&self, shape: &[i64], _device: Device) -> Result<Tensor> {
        let next = self.draws.borrow_mut().remove(0);
        assert_eq!(next.size(), shape);
        Ok(next)
    }
}

/// Largest absolute difference between two tensors of the same shape.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// y = tanh(x Wᵀ), so J_b = diag(1 − y_b²) W and ‖J_b‖²_F = Σ_c (1 − y_bc²)² ‖W_c‖².
struct TanhLayer {
    x: Tensor,
    w: Tensor,
    y: Tensor,
}

impl TanhLayer {
    fn new(batch: i64, inputs: i64, outputs: i64, seed: i64) -> Self {
        tch::manual_seed(seed);
        let x = Tensor::randn([batch, inputs], F64).set_requires_grad(true);
        let w = Tensor::randn([outputs, inputs], F64).set_requires_grad(true);
        let y = x.matmul(&w.tr()).tanh();
        TanhLayer { x, w, y }
    }

    /// ‖J_b‖²_F for each sample, from the closed form.
    fn exact(&self) -> Tensor {
        tch::no_grad(|| {
            let slope = (-self.y.square() + 1.0).square();
            let row_norms = self.w.square().sum_dim_intlist(1, false, Kind::Double);
            (slope * row_norms).sum_dim_intlist(1, false, Kind::Double)
        })
    }

    fn run(&self, options: FrobeniusOptions) -> Result<Tensor> {
        estimate(&self.x, &self.y, options)
    }
}

#[test]
fn exact_mode_matches_the_closed_form_for_every_reduction() {
    let layer = TanhLayer::new(5, 7, 4, 0);
    let exact = layer.exact();
    let per_sample = layer
        .run(options(
            ProjectionCount::Exact,
            Sampling::Sphere,
            Reduction::None,
        ))
        .unwrap();
    assert_eq!(per_sample.size(), [5]);
    assert!(max_abs_diff(&per_sample, &(0.5 * &exact)) < 1e-12);
    let mean = layer
        .run(options(
            ProjectionCount::Exact,
            Sampling::Sphere,
            Reduction::Mean,
        ))
        .unwrap();
    let sum = layer
        .run(options(
            ProjectionCount::Exact,
            Sampling::Sphere,
            Reduction::Sum,
        ))
        .unwrap();
    assert!((scalar(&mean) - 0.5 * scalar(&exact.mean(Kind::Double))).abs() < 1e-12);
    assert!((scalar(&sum) - 0.5 * scalar(&exact.sum(Kind::Double))).abs() < 1e-12);
}

#[test]
fn orthogonal_directions_with_n_equal_to_c_are_exact() {
    // n = C orthonormal directions span the output space, so any draw gives the exact value.
    let layer = TanhLayer::new(6, 5, 3, 1);
    let exact = layer.exact();
    for seed in 0..3 {
        tch::manual_seed(seed);
        let estimate = layer
            .run(options(
                ProjectionCount::Random(3),
                Sampling::Orthogonal,
                Reduction::None,
            ))
            .unwrap();
        assert!(max_abs_diff(&estimate, &(0.5 * &exact)) < 1e-10);
    }
}

#[test]
fn sphere_estimate_is_unbiased() {
    // For v uniform on the unit sphere of R^C and A = J_b J_bᵀ, Var(C·vᵀAv) =
    // 2C/(C+2)·(tr A² − (tr A)²/C) ≤ 2(C−1)/(C+2)·(tr A)²: a relative standard deviation of at
    // most 1 for C = 4, and summing over samples adds no relative noise. With n = 10,000 the
    // estimate's is at most 1%, so it lies within 5% of the exact value (5 standard deviations)
    // except with a probability below 1e-6; a wrong scale (C−1 for C, a lost ½) is off by 25%+.
    let layer = TanhLayer::new(8, 6, 4, 2);
    tch::manual_seed(3);
    let estimate = layer
        .run(options(
            ProjectionCount::Random(10_000),
            Sampling::Sphere,
            Reduction::Mean,
        ))
        .unwrap();
    let exact = 0.5 * scalar(&layer.exact().mean(Kind::Double));
    let relative = (scalar(&estimate) - exact).abs() / exact;
    assert!(relative < 0.05, "relative error {relative}");
    // A single projection is not exact: the test above could fail.
    let one = layer
        .run(options(
            ProjectionCount::Random(1),
            Sampling::Sphere,
            Reduction::Mean,
        ))
        .unwrap();
    assert!((scalar(&one) - exact).abs() > 1e-6);
}

#[test]
fn gradient_of_the_regularizer_reaches_the_weights() {
    // For y = x Wᵀ the Jacobian is W for every sample: R = ½‖W‖²_F, so dR/dW = W.
    tch::manual_seed(4);
    let x = Tensor::randn([3, 5], F64).set_requires_grad(true);
    let w = Tensor::randn([4, 5], F64).set_requires_grad(true);
    let y = x.matmul(&w.tr());
    let r = estimate(
        &x,
        &y,
        options(ProjectionCount::Exact, Sampling::Sphere, Reduction::Mean),
    )
    .unwrap();
    assert!((scalar(&r) - 0.5 * scalar(&w.square().sum(Kind::Double))).abs() < 1e-12);
    let grad = gradient(&r, &w, None, false)
        .unwrap()
        .expect("R depends on W");
    assert!(max_abs_diff(&grad, &w) < 1e-12);
}

#[test]
fn a_callers_draws_are_used_as_drawn() {
    // Draws whose rows are basis vectors turn the estimate into the exact value; the sphere
    // draws once per projection, [B, C] each, in the upstream order.
    let layer = TanhLayer::new(4, 3, 2, 5);
    let eye = Tensor::eye(2, F64);
    let normal = Prescribed {
        draws: RefCell::new(vec![
            eye.get(0).expand([4, 2], false).contiguous(),
            eye.get(1).expand([4, 2], false).contiguous(),
        ]),
        device: Some(Device::Cpu),
    };
    let estimate = estimate_with(
        &layer.x,
        &layer.y,
        options(
            ProjectionCount::Random(2),
            Sampling::Sphere,
            Reduction::None,
        ),
        &normal,
    )
    .unwrap();
    assert!(max_abs_diff(&estimate, &(0.5 * layer.exact())) < 1e-12);
    assert!(normal.draws.borrow().is_empty());
}

#[test]
fn a_callers_own_directions_are_used_as_given_even_for_one_output() {
    // Upstream's `_random_vector` hook: directions are used unnormalised, C/n scaling applies.
    let layer = TanhLayer::new(3, 4, 2, 11);
    let calls = RefCell::new(Vec::new());
    let given = |size: i64, batch: i64| -> Result<Tensor> {
        calls.borrow_mut().push((size, batch));
        // The first basis vector scaled by 2: ‖2 e₁ᵀ J_b‖² = 4 ‖row 1 of J_b‖².
        Ok(Tensor::zeros([batch, size], F64).index_fill(1, &Tensor::from_slice(&[0i64]), 2.0))
    };
    let options = options(
        ProjectionCount::Random(3),
        Sampling::Sphere,
        Reduction::None,
    );
    let x = Shaped::new(layer.x.shallow_clone());
    let y = Shaped::new(layer.y.shallow_clone());
    let estimate = squared_frobenius(&x, &y, options, Draws::Given(&given), &no_interrupt).unwrap();
    // R_b = ½ · C/n · Σ_k ‖v_kᵀ J_b‖² = ½ · 2/3 · 3 · 4 ‖J_b row 1‖² = 4 ‖J_b row 1‖².
    let slope = (-layer.y.select(1, 0).square() + 1.0).square();
    let row = layer.w.get(0).square().sum(Kind::Double);
    assert!(max_abs_diff(&estimate, &(slope * row * 4.0).detach()) < 1e-12);
    assert_eq!(*calls.borrow(), vec![(2, 3); 3]);
    // Orthogonal directions cannot come from the hook.
    let orthogonal = options_with_sampling(Sampling::Orthogonal);
    let result = squared_frobenius(&x, &y, orthogonal, Draws::Given(&given), &no_interrupt);
    assert!(matches!(result, Err(Error::Value(m)) if m.contains("_random_vector")));
    // Wrong shapes are refused with the hook's name.
    let wrong = |_: i64, _: i64| -> Result<Tensor> { Ok(Tensor::zeros([5], F64)) };
    let result = squared_frobenius(&x, &y, options, Draws::Given(&wrong), &no_interrupt);
    assert!(matches!(result, Err(Error::Value(m)) if m.contains("must return a tensor of shape")));
}

fn options_with_sampling(sampling: Sampling) -> FrobeniusOptions {
    options(ProjectionCount::Random(1), sampling, Reduction::Mean)
}

#[test]
fn a_freed_graph_is_reported_with_the_fix_and_other_engine_errors_stay_whole() {
    let x = Tensor::ones([2, 3], F64).set_requires_grad(true);
    let y = x.square();
    y.sum(Kind::Double).backward();
    let result = estimate(
        &x,
        &y,
        options(ProjectionCount::Exact, Sampling::Sphere, Reduction::Mean),
    );
    assert!(
        matches!(&result, Err(Error::Runtime(m)) if m.contains("already freed") && m.contains("retain_graph=True")),
        "{result:?}"
    );
    // A grad_output of the wrong shape: libtorch's own error, kept as its exception.
    let z = x.square();
    match vector_jacobian_product(&z, &Tensor::ones([5], F64), &x, false) {
        Err(Error::Torch(exception)) => {
            assert!(exception.is_c10_error());
            assert!(
                exception.message().contains("invalid gradient"),
                "{exception:?}"
            );
            assert!(
                !exception.message().contains("frame #"),
                "backtrace kept: {exception:?}"
            );
        }
        other => panic!("expected a libtorch exception, got {other:?}"),
    }
}

#[test]
fn libtorch_warnings_are_captured_instead_of_printed() {
    let capture = WarningCapture::start();
    // One value has no unbiased standard deviation: libtorch warns and returns NaN.
    let _ = Tensor::ones([1], F64).std(true);
    let warnings = capture.finish();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert!(
        warning.message.contains("degrees of freedom"),
        "{warning:?}"
    );
    assert!(!warning.deprecation);
    assert!(warning.file.is_some() && warning.line > 0);
    assert!(warning
        .display_message()
        .contains("(Triggered internally at "));
    // Once finished, warnings go where they went before.
    let after = WarningCapture::start();
    drop(after);
}

#[test]
fn a_generator_for_another_device_is_a_value_error_and_nothing_is_drawn() {
    let layer = TanhLayer::new(4, 3, 2, 5);
    let normal = Prescribed {
        draws: RefCell::new(vec![]),
        device: Some(Device::Cuda(1)),
    };
    let result = estimate_with(
        &layer.x,
        &layer.y,
        options(
            ProjectionCount::Random(1),
            Sampling::Sphere,
            Reduction::Mean,
        ),
        &normal,
    );
    assert!(
        matches!(result, Err(Error::Value(m)) if m.contains("cuda:1") && m.contains("device=\"cpu\""))
    );
    // The exact value draws nothing, so the generator's device does not matter.
    let exact = estimate_with(
        &layer.x,
        &layer.y,
        options(ProjectionCount::Exact, Sampling::Sphere, Reduction::Mean),
        &normal,
    );
    assert!(exact.is_ok());
}

#[test]
fn reductions_scale_sum_and_average_with_an_empty_mean_of_zero() {
    let values = Tensor::from_slice(&[1.0f64, 2.0, 6.0]);
    assert_eq!(
        scalar(&reduce(&values, Reduction::Mean, 3, 0.5).unwrap()),
        1.5
    );
    assert_eq!(
        scalar(&reduce(&values, Reduction::Sum, 3, 0.5).unwrap()),
        4.5
    );
    let none = reduce(&values, Reduction::None, 3, 0.5).unwrap();
    assert!(max_abs_diff(&none, &Tensor::from_slice(&[0.5f64, 1.0, 3.0])) == 0.0);
    // A sum over the batch taken already (0-d) is scaled, not summed again: 1/B for the mean.
    let total = Tensor::from_slice(&[9.0f64]).sum(Kind::Double);
    assert_eq!(
        scalar(&reduce(&total, Reduction::Mean, 3, 0.5).unwrap()),
        1.5
    );
    assert_eq!(
        scalar(&reduce(&total, Reduction::Sum, 3, 0.5).unwrap()),
        4.5
    );
    let empty = Tensor::zeros([0], F64);
    assert_eq!(
        scalar(&reduce(&empty, Reduction::Mean, 0, 0.5).unwrap()),
        0.0
    );
}

#[test]
fn a_factor_must_be_finite_and_not_negative_for_both_regularizers() {
    assert_eq!(Factor::new(0.5).unwrap().get(), 0.5);
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(Factor::new(bad), Err(Error::Value(m)) if m.contains("factor must be")));
    }
}

#[test]
fn empty_batch_gives_zero_attached_to_the_graph() {
    let layer = TanhLayer::new(0, 3, 2, 6);
    let r = layer
        .run(options(
            ProjectionCount::Random(1),
            Sampling::Sphere,
            Reduction::Mean,
        ))
        .unwrap();
    assert_eq!(scalar(&r), 0.0);
    assert!(r.requires_grad());
}

#[test]
fn spectral_norm_of_a_linear_map_is_its_largest_singular_value() {
    // W = D·H with D = diag(3, 2, 1, 0.5) padded to 4x6 and H a Householder reflection: its
    // singular values are D's, with no dependence on the random generator. σ₂/σ₁ = 2/3, so power
    // iteration converges far within 500 steps from any start.
    let d = Tensor::zeros([4, 6], F64);
    for (i, value) in [3.0, 2.0, 1.0, 0.5].into_iter().enumerate() {
        let _ = d.get(i as i64).get(i as i64).fill_(value);
    }
    let u = Tensor::arange_start(1, 7, F64).reshape([6, 1]);
    let h = Tensor::eye(6, F64) - u.matmul(&u.tr()) * (2.0 / 91.0);
    let w = d.matmul(&h);
    tch::manual_seed(7);
    let x = Tensor::randn([3, 6], F64).set_requires_grad(true);
    let y = x.matmul(&w.tr());
    let (x, y) = (Shaped::new(x), Shaped::new(y));
    let power = PowerIteration::new(500, 0.0).unwrap();
    let sigma =
        spectral::spectral_norms(&x, &y, power, false, &DefaultGenerator, &no_interrupt).unwrap();
    // The regularizer is half the mean of the squares.
    let options = SpectralOptions {
        power,
        reduction: Reduction::Mean,
        factor: Factor::new(0.5).unwrap(),
        create_graph: false,
    };
    let reg =
        spectral::squared_spectral(&x, &y, options, &DefaultGenerator, &no_interrupt).unwrap();
    assert!((scalar(&reg) - 4.5).abs() < 1e-7);
    let expected = 3.0;
    // The construction is checked independently: σ_max(W)² is the largest eigenvalue of W Wᵀ.
    let largest = scalar(&w.matmul(&w.tr()).linalg_eigvalsh("L").max()).sqrt();
    assert!((largest - expected).abs() < 1e-12);
    assert_eq!(sigma.size(), [3]);
    for b in 0..3 {
        let relative = (sigma.double_value(&[b]) - expected).abs() / expected;
        assert!(relative < 1e-8, "sample {b}: relative error {relative}");
    }
}

#[test]
fn orthogonal_directions_are_orthonormal_per_sample() {
    tch::manual_seed(8);
    let directions = Directions::new(
        Sampling::Orthogonal,
        3,
        [4, 6],
        Kind::Double,
        Device::Cpu,
        Draws::Normal(&DefaultGenerator),
    )
    .unwrap();
    let q = Tensor::stack(
        &(0..3)
            .map(|k| directions.get(k, 1.0).unwrap())
            .collect::<Vec<_>>(),
        2,
    ); // [B, C, n]
    let gram = q.transpose(1, 2).matmul(&q);
    let eye = Tensor::eye(3, F64).expand([4, 3, 3], false);
    assert!(max_abs_diff(&gram, &eye) < 1e-12);
}

#[test]
fn sphere_directions_are_unit_rows_on_the_requested_dtype() {
    let directions = Directions::new(
        Sampling::Sphere,
        2,
        [5, 7],
        Kind::Float,
        Device::Cpu,
        Draws::Normal(&DefaultGenerator),
    )
    .unwrap();
    let v = directions.get(1, 1.0).unwrap();
    assert_eq!(v.kind(), Kind::Float);
    let norms = v.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
    assert!(max_abs_diff(&norms, &Tensor::ones([5], (Kind::Float, Device::Cpu))) < 1e-6);
}

#[test]
fn sphere_directions_are_the_float32_draw_normalised_then_cast_for_every_dtype() {
    // Upstream's draw: torch.randn(B, C) in float32 whatever y's dtype, v / ‖v‖ in float32, then
    // the engine's cast to y's dtype. B·C = 21 is neither under 16 nor a multiple of 16, where
    // half-precision draws of the same seed would give other values.
    for kind in [Kind::Half, Kind::BFloat16, Kind::Float, Kind::Double] {
        let directions = Directions::new(
            Sampling::Sphere,
            1,
            [3, 7],
            kind,
            Device::Cpu,
            Draws::Normal(&DefaultGenerator),
        )
        .unwrap();
        tch::manual_seed(4);
        let v = directions.get(0, 0.75).unwrap();
        let after = Tensor::rand([4], (Kind::Float, Device::Cpu));
        tch::manual_seed(4);
        let noise = Tensor::randn([3, 7], (Kind::Float, Device::Cpu));
        let expected = (&noise / noise.norm_scalaropt_dim(2.0, [1i64].as_slice(), true))
            .to_kind(kind)
            .to_kind(Kind::Double)
            * 0.75;
        assert_eq!(v.kind(), kind);
        // The gain is the only rounding beyond the cast (none where it joins the division).
        let allowed = match kind {
            Kind::Half => 1e-3,
            Kind::BFloat16 => 4e-3,
            Kind::Float => 2e-7,
            _ => 1e-15,
        };
        let error = max_abs_diff(&v.to_kind(Kind::Double), &expected);
        assert!(error <= allowed, "{kind:?}: {error}");
        // The generator stands where one float32 draw of 21 values leaves it.
        assert_eq!(
            max_abs_diff(&after, &Tensor::rand([4], (Kind::Float, Device::Cpu))),
            0.0,
            "{kind:?}"
        );
    }
}

#[test]
fn zero_rows_stay_zero_in_every_precision() {
    for kind in [Kind::Half, Kind::BFloat16, Kind::Float, Kind::Double] {
        let rows = Tensor::zeros([2, 3], (kind, Device::Cpu));
        let unit = unit_rows(&rows).unwrap();
        assert_eq!(scalar(&unit.abs().sum(Kind::Double)), 0.0, "{kind:?}");
        assert!(tiny(kind) > 0.0);
        // The clamp must be representable: tiny rounds to a positive number in the kind itself.
        let clamp = Tensor::full([1], tiny(kind), (kind, Device::Cpu));
        assert!(clamp.double_value(&[0]) > 0.0, "{kind:?}");
    }
}

#[test]
fn a_root_without_a_graph_is_refused_instead_of_crashing_the_engine() {
    let x = Tensor::ones([2], F64).set_requires_grad(true);
    let constant = Tensor::ones([], F64);
    assert!(gradient(&constant, &x, None, false).unwrap().is_none());
    match vector_jacobian_product(&constant, &Tensor::ones([], F64), &x, false) {
        Err(Error::Runtime(message)) => assert!(message.contains("inference_mode"), "{message}"),
        other => panic!("expected a RuntimeError, got {other:?}"),
    }
}

#[test]
fn output_not_computed_from_x_is_a_runtime_error() {
    let x = Tensor::ones([2, 3], F64).set_requires_grad(true);
    let other = Tensor::ones([2, 3], F64).set_requires_grad(true);
    let y = other.square();
    let result = estimate(
        &x,
        &y,
        options(ProjectionCount::Exact, Sampling::Sphere, Reduction::Mean),
    );
    match result {
        Err(Error::Runtime(message)) => assert!(message.contains("does not depend on x")),
        other => panic!("expected a RuntimeError, got {other:?}"),
    }
}

#[test]
fn bad_inputs_get_the_exception_type_pytorch_would_raise() {
    let x = Tensor::ones([2, 3], F64).set_requires_grad(true);
    let integers = Tensor::ones([2, 3], (Kind::Int64, Device::Cpu));
    assert!(
        matches!(check_inputs(&x, &integers), Err(Error::Type(m)) if m.contains("torch.int64"))
    );
    let scalar_y = x.sum(Kind::Double);
    assert!(matches!(check_inputs(&x, &scalar_y), Err(Error::Value(m)) if m.contains("0-d")));
    let detached = x.detach();
    assert!(
        matches!(check_inputs(&detached, &x.square()), Err(Error::Runtime(m)) if m.contains("requires_grad = True"))
    );
    assert!(matches!(batch_and_size(&[]), Err(Error::Value(_))));
    assert_eq!(batch_and_size(&[3, 2, 5]).unwrap(), (3, 10));
    assert!(
        matches!(check_same_batch(&[4, 2], 3, "reduction=\"none\""), Err(Error::Value(m)) if m.contains("batch 4"))
    );
    assert!(matches!(ProjectionCount::from_n(0), Err(Error::Value(m)) if m.contains("n=0")));
    assert_eq!(ProjectionCount::from_n(-1).unwrap(), ProjectionCount::Exact);
    assert_eq!(
        ProjectionCount::from_n(3).unwrap(),
        ProjectionCount::Random(3)
    );
    assert!(matches!(Sampling::parse("haar"), Err(Error::Value(_))));
    assert!(matches!(PowerIteration::new(0, 0.0), Err(Error::Value(m)) if m.contains("iters")));
    assert!(matches!(PowerIteration::new(1, f64::NAN), Err(Error::Value(m)) if m.contains("tol")));
    assert!(matches!(Reduction::parse("avg"), Err(Error::Value(_))));
}

#[test]
fn orthogonal_with_more_directions_than_outputs_is_a_value_error() {
    let layer = TanhLayer::new(2, 3, 2, 9);
    let result = layer.run(options(
        ProjectionCount::Random(3),
        Sampling::Orthogonal,
        Reduction::Mean,
    ));
    assert!(matches!(result, Err(Error::Value(m)) if m.contains("n <= 2")));
}

#[test]
fn libtorch_backtraces_are_cut_from_messages() {
    let message = "Expected all tensors to be on the same device\nException raised from \
                   compute_types at aten/src/ATen/TensorIterator.cpp:42\nframe #0: c10::Error";
    assert_eq!(
        first_paragraph(message),
        "Expected all tensors to be on the same device"
    );
    assert_eq!(first_paragraph("plain message"), "plain message");
}
