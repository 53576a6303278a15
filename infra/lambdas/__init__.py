"""The CDK constructs of the Lambda functions, one module per unit: each deploys the handler of
`functions/<unit>/` (the runtime's side; it never imports infra)."""
