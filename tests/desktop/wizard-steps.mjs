export async function completeWizard() {}
